"""What a run reports (SPEC §3-5, §8): its counters, its health, progress and the summary.

`Report` gathers the counters of the parts (the resequencer, the books, the sinks, the source,
the parser, the checkpoint store) in one place, for the progress and summary log lines and for
/metrics; `health` tells /healthz whether a stage is stuck.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio

from l3tol1.log import SafeStream, get_logger
from l3tol1.run.assembly import Parts
from l3tol1.run.stages import Health
from l3tol1.run.steps import ParseStep, instruments_not_seen

__all__ = ["Report"]


class Report:
    """The counters and health of one run.

    :param extra: more counters (the publisher's), merged over the run's own.
    :param rate_counter: the counter whose rate the progress and summary lines give.
    """

    def __init__(
        self,
        parts: Parts,
        parse: ParseStep,
        health: Health,
        *,
        listed: tuple[str, ...] | None,
        stall_timeout: float,
        clock: Callable[[], float],
        extra: Callable[[], dict[str, Any]] = dict,
        rate_counter: str = "events_applied",
    ) -> None:
        self.parts = parts
        self.parse = parse
        self.stages = health
        self.listed = listed
        self.stall_timeout = stall_timeout
        self.clock = clock
        self.extra = extra
        self.rate_counter = rate_counter
        self.started_at = clock()
        self.log = get_logger()

    def counters(self) -> dict[str, Any]:
        """Every counter of the run, as reported in the progress and summary lines."""
        parts = self.parts
        feed, instruments, source, store = parts.feed, parts.instruments, parts.source, parts.store
        return {
            "events_read": feed.received,
            "events_applied": instruments.applied,
            "rows_written": parts.output.rows,
            "pending": feed.pending,
            "rejects": dict(parts.rejects.by_reason),
            "anomalies": dict(instruments.anomalies),
            "gaps_skipped": feed.gaps_skipped,
            "seqs_lost": feed.seqs_lost,
            "last_seq": instruments.last_seq,
            "instruments": len(instruments),
            "events_skipped": instruments.skipped,
            "crossed_quotes": instruments.crossed,
            "locked_quotes": instruments.locked,
            "lines_read": source.position.line,
            "rotations": source.rotations,
            "truncations": source.truncations,
            "bytes_read": source.bytes_read,
            "seconds_since_last_input": round(time.monotonic() - source.last_data_at, 3),
            "records_by_action": self.parse.counts("by_action"),
            "records_by_type": self.parse.counts("by_type"),
            "checkpoints": 0 if store is None else store.saves,
            "checkpoint_bytes": 0 if store is None else store.last_size,
            "checkpoint_seconds": 0.0 if store is None else round(store.last_seconds, 4),
            **self.extra(),
        }

    def health(self) -> tuple[bool, str]:
        """Healthy unless a stage has held one batch longer than --stall-timeout (stuck, or
        blocked by a stuck stage after it). Waiting for input is healthy."""
        now = self.clock()
        source = self.parts.source
        for stage, since in list(self.stages.busy.items()):
            if since is None:
                continue
            if stage == "source":
                if source.idle:
                    continue
                since = max(since, source.last_active)
            if now - since > self.stall_timeout:
                return False, f"stalled: the {stage} stage has not moved for {now - since:.0f} s"
        return True, "ok"

    async def progress_lines(self, interval: float) -> None:
        """A ``progress`` log line every ``interval`` seconds, until cancelled."""
        last_time, last_done = self.clock(), self.counters()[self.rate_counter]
        while True:
            await anyio.sleep(interval)
            now = self.clock()
            counters = self.counters()
            rate = (counters[self.rate_counter] - last_done) / max(now - last_time, 1e-9)
            self.log.info("progress", **counters, events_per_s=round(rate))
            last_time, last_done = now, counters[self.rate_counter]

    async def progress_bar(self, stderr: SafeStream | None) -> None:
        """A progress bar on the terminal (when reading to the end): bytes, events/s, ETA."""
        from l3tol1.ui import ProgressBar

        source, instruments = self.parts.source, self.parts.instruments
        with ProgressBar(source.size, stderr) as bar:
            while True:
                bar.update(source.bytes_read, instruments.applied, self.clock() - self.started_at)
                await anyio.sleep(0.1)

    def summary(self, stopped_by: str | None, stderr: SafeStream | None, table: bool) -> None:
        """The closing log line (every counter, elapsed time and rate), and with ``table`` the
        summary table on the terminal."""
        elapsed = self.clock() - self.started_at
        counters = self.counters()
        if self.listed is not None:
            counters["instruments_not_seen"] = instruments_not_seen(
                self.listed, self.parts.instruments, self.parts.namer
            )
        self.log.info(
            "summary",
            **counters,
            elapsed_s=round(elapsed, 3),
            events_per_s=round(counters[self.rate_counter] / max(elapsed, 1e-9)),
            stopped_by=stopped_by or "end_of_input",
        )
        if table:
            from l3tol1.ui import print_summary

            print_summary(counters, elapsed, stderr)
