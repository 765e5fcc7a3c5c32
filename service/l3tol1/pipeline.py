"""Wire the four stages together and own signals and shutdown (SPEC §5, §8).

    source ──Batch──▶ resequencer ──Batch──▶ book ──Batch──▶ writer
    (read, parse)     (seq order, gaps)     (apply, BBO)    (format, flush, fsync)

Each stage is a coroutine in one task group, joined to the next by a bounded memory stream of
batches (backpressure for free). A stage closes its send side when done, so shutdown flows down
the line: SIGTERM/SIGINT cancels only the reading; the later stages drain what is in flight,
the writer flushes and fsyncs, and the run ends. A second signal exits at once.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from l3tol1 import checkpoint
from l3tol1.config import Settings
from l3tol1.errors import ConfigError, OutputError
from l3tol1.events import Batch
from l3tol1.instrument import Instrument
from l3tol1.log import get_logger
from l3tol1.resequencer import Resequencer
from l3tol1.source import FileSource, check_input
from l3tol1.writer import FileSink, L1Writer

if TYPE_CHECKING:
    from l3tol1.metrics import MetricsServer

__all__ = ["Pipeline"]

# Batches in flight between two stages. A batch is one input chunk (256 KiB, ~2.7k rows), so this
# bounds memory while letting each stage run ahead of the next a little.
_STREAM_BUFFER = 2
# The final flush and fsync may take this long before shutdown gives up on a stuck disk.
_FINAL_FLUSH_TIMEOUT = 10.0


class Pipeline:
    """One run of l3tol1: built (and checked) synchronously, then `run` in an event loop.

    :raises ConfigError: from the constructor, for a missing input (no-follow), an unusable
        header, an output that cannot be opened, or paths that collide.
    """

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        _check_paths(settings)
        check_input(settings.input_file, follow=settings.follow)
        self.log = get_logger()
        self._notes: list[tuple[str, str]] = []
        self.checkpoints: checkpoint.CheckpointStore | None = None
        resume = None
        if settings.checkpoint is not None:
            self.checkpoints = checkpoint.CheckpointStore(settings.checkpoint)
            state, removed_temp = self.checkpoints.load()
            if removed_temp:  # logged when the run starts, after the start line
                self._notes.append(("checkpoint_temp_removed", str(settings.checkpoint)))
            if state is not None:
                resume = checkpoint.plan(
                    state,
                    input_path=settings.input_file,
                    output=settings.output_file,
                    rejects=settings.reject_path,
                    checkpoint=settings.checkpoint,
                )
        self.resumed = resume is not None
        self.source = FileSource(
            settings.input_file,
            follow=settings.follow,
            poll_interval=settings.poll_interval,
            resume=None
            if resume is None
            else (
                resume.input_path,
                int(resume.state["source"]["offset"]),
                int(resume.state["source"]["line"]),
            ),
        )
        self.instrument = Instrument(
            Resequencer(
                start_seq=settings.start_seq,
                max_pending=settings.max_pending,
                gap_timeout=settings.gap_timeout if settings.follow else None,
            )
        )
        self.metrics: MetricsServer | None = None
        if settings.metrics_port is not None:
            from l3tol1.metrics import MetricsServer

            self.metrics = MetricsServer(
                self.counters, self.health, host=settings.metrics_host, port=settings.metrics_port
            )
        try:
            output = FileSink(
                settings.output_file, keep=None if resume is None else resume.output_size
            )
            rejects = FileSink(
                settings.reject_path, keep=None if resume is None else resume.rejects_size
            )
        except OutputError as exc:
            raise ConfigError(str(exc)) from exc
        self.writer = L1Writer(
            output,
            rejects,
            batch_size=settings.batch_size,
            max_flush_interval=settings.max_flush_interval,
            observe_flush=None if self.metrics is None else self.metrics.flush_seconds.observe,
        )
        # When each stage took its current batch (None: waiting for one); see `health`.
        self._busy: dict[str, float | None] = dict.fromkeys(
            ("source", "resequencer", "book", "writer")
        )
        if resume is not None:
            state = resume.state
            self.instrument.resequencer.restore(state["resequencer"], clock())
            self.instrument.restore_after_apply(state["instrument"])
            self.writer.rows_written = int(state["writer"]["rows_written"])
            self.writer.rejects_by_reason = dict(state["writer"]["rejects_by_reason"])
        self.log = get_logger()
        self.stopped_by: str | None = None
        self._started = clock()

    async def run(self) -> None:
        """Run until end of input (no-follow), or until SIGTERM/SIGINT."""
        for event, path in self._notes:
            self.log.warning(event, path=path)
        await self.writer.start(fresh=not self.resumed)
        self._stop_reading = anyio.CancelScope()
        if self.metrics is not None:
            self.metrics.start()
            self.log.info(
                "metrics_listening", host=self.settings.metrics_host, port=self.metrics.port
            )
        try:
            await self._run_stages()
        finally:
            if self.metrics is not None:
                self.metrics.close()

    async def _run_stages(self) -> None:
        async with anyio.create_task_group() as outer:
            outer.start_soon(self._watch_signals, outer)
            if self.settings.interactive and not self.settings.follow:
                outer.start_soon(self._show_progress_bar)
            else:
                outer.start_soon(self._report_progress)
            async with anyio.create_task_group() as stages:
                self._stages = stages
                send_read, receive_read = anyio.create_memory_object_stream[Batch](_STREAM_BUFFER)
                send_ordered, receive_ordered = anyio.create_memory_object_stream[Batch](
                    _STREAM_BUFFER
                )
                send_rows, receive_rows = anyio.create_memory_object_stream[Batch](_STREAM_BUFFER)
                stages.start_soon(self._read_stage, send_read)
                stages.start_soon(self._resequence_stage, receive_read, send_ordered)
                stages.start_soon(self._book_stage, receive_ordered, send_rows)
                stages.start_soon(self._write_stage, receive_rows)
            outer.cancel_scope.cancel()

    # -- stages --------------------------------------------------------------------------------

    async def _read_stage(self, send: ObjectSendStream[Batch]) -> None:
        busy = self._busy
        async with send:
            with self._stop_reading:
                busy["source"] = self.clock()
                async for batch in self.source.batches():
                    await send.send(batch)
                    busy["source"] = self.clock()

    async def _resequence_stage(
        self, receive: ObjectReceiveStream[Batch], send: ObjectSendStream[Batch]
    ) -> None:
        resequencer = self.instrument.resequencer
        position = self.source.position
        next_checkpoint = self.clock() + self.settings.checkpoint_interval
        changed = False  # since the last checkpoint: an idle run has nothing new to record
        async with receive, send:
            while True:
                batch = None
                deadline = resequencer.deadline()
                if changed and self.checkpoints is not None:
                    deadline = (
                        next_checkpoint if deadline is None else min(deadline, next_checkpoint)
                    )
                self._busy["resequencer"] = None
                try:
                    with anyio.move_on_after(_until(deadline, self.clock())):
                        batch = await receive.receive()
                except anyio.EndOfStream:
                    # Stopped: what waits for a gap stays unapplied (SPEC §8), but is kept in
                    # the final checkpoint so that a restart carries on with it.
                    if self.checkpoints is not None:
                        await send.send(Batch(checkpoint=self._cut(position)))
                    return
                self._busy["resequencer"] = self.clock()
                ready: list = []
                if batch is None:  # a gap timed out, or a checkpoint is due
                    out = Batch()
                    resequencer.expire(self.clock(), ready)
                    changed = changed or bool(ready)
                else:
                    changed = True
                    position = batch.position or position
                    out = Batch(rejects=batch.rejects, end_of_input=batch.end_of_input)
                    resequencer.push(batch.events, self.clock(), ready, out.rejects)
                    if batch.end_of_input:
                        resequencer.finish(ready)
                self._log_gaps(resequencer)
                out.events = ready
                now = self.clock()
                if (
                    self.checkpoints is not None
                    and changed
                    and (now >= next_checkpoint or out.end_of_input)
                ):
                    out.checkpoint = self._cut(position)
                    next_checkpoint = now + self.settings.checkpoint_interval
                    changed = False
                if ready or out.rejects or out.end_of_input or out.checkpoint:
                    await send.send(out)

    def _cut(self, position: Any) -> dict[str, Any]:
        """The resequencer's part of a checkpoint, with the source position it matches."""
        return {**position.record(), "resequencer": self.instrument.resequencer.snapshot()}

    async def _book_stage(
        self, receive: ObjectReceiveStream[Batch], send: ObjectSendStream[Batch]
    ) -> None:
        instrument = self.instrument
        busy = self._busy
        async with receive, send:
            async for batch in receive:
                busy["book"] = self.clock()
                anomalies: list = []
                instrument.apply(batch.events, batch.rows, anomalies)
                for kind, event in anomalies:
                    self.log.debug("anomaly", kind=kind, seq=event[0], line=event[7])
                if batch.checkpoint is not None:
                    batch.checkpoint["instrument"] = instrument.snapshot_after_apply()
                batch.events = []
                await send.send(batch)
                busy["book"] = None

    async def _write_stage(self, receive: ObjectReceiveStream[Batch]) -> None:
        writer = self.writer
        try:
            async with receive:
                while True:
                    batch = None
                    self._busy["writer"] = None
                    try:
                        with anyio.move_on_after(_until(writer.deadline(), self.clock())):
                            batch = await receive.receive()
                    except anyio.EndOfStream:
                        return
                    self._busy["writer"] = now = self.clock()
                    if batch is None:
                        await writer.flush_if_due(now)
                        continue
                    writer.add(batch.rows, batch.rejects, now)
                    if batch.checkpoint is None:
                        await writer.flush_if_due(now)
                    else:
                        await self._save_checkpoint(batch.checkpoint, now)
        finally:
            # Even when cancelled, what was processed is written and made durable, within a
            # deadline so that a stuck disk cannot hold shutdown forever.
            with anyio.move_on_after(_FINAL_FLUSH_TIMEOUT, shield=True):
                try:
                    await writer.flush(self.clock(), sync=True)
                finally:
                    await writer.aclose()

    async def _save_checkpoint(self, cut: dict[str, Any], now: float) -> None:
        """Make every row up to the cut durable, then record the cut (SPEC §8)."""
        assert self.checkpoints is not None
        writer = self.writer
        await writer.flush(now, sync=True)
        cut["output"] = checkpoint.file_record(self.settings.output_file, writer.output.size)
        cut["rejects"] = checkpoint.file_record(self.settings.reject_path, writer.rejects.size)
        cut["writer"] = {
            "rows_written": writer.rows_written,
            "rejects_by_reason": dict(writer.rejects_by_reason),
        }
        await anyio.to_thread.run_sync(self.checkpoints.save, cut)

    # -- signals, progress, summary ------------------------------------------------------------

    async def _watch_signals(self, outer: anyio.abc.TaskGroup) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                name = signal.Signals(signum).name
                if self.stopped_by is None:
                    self.stopped_by = name
                    self.log.info("stopping", signal=name)
                    self._stop_reading.cancel()
                    outer.start_soon(self._enforce_shutdown_deadline)
                else:
                    # The last checkpoint stays consistent: it only ever claims synced rows.
                    self.log.warning("forced_exit", signal=name)
                    os._exit(128 + signum)

    async def _enforce_shutdown_deadline(self) -> None:
        await anyio.sleep(self.settings.shutdown_timeout)
        self.log.warning("shutdown_deadline_passed", seconds=self.settings.shutdown_timeout)
        self._stages.cancel_scope.cancel()

    async def _report_progress(self) -> None:
        interval = self.settings.progress_interval
        last_time, last_applied = self.clock(), 0
        while True:
            await anyio.sleep(interval)
            now = self.clock()
            counters = self.counters()
            rate = (counters["events_applied"] - last_applied) / max(now - last_time, 1e-9)
            self.log.info("progress", **counters, events_per_s=round(rate))
            last_time, last_applied = now, counters["events_applied"]

    async def _show_progress_bar(self) -> None:
        """A progress bar on the terminal (--no-follow only): bytes read, events/s, ETA."""
        from l3tol1.ui import ProgressBar

        size = os.path.getsize(self.settings.input_file)
        with ProgressBar(size) as bar:
            while True:
                bar.update(
                    self.source.bytes_read, self.instrument.applied, self.clock() - self._started
                )
                await anyio.sleep(0.1)

    def health(self) -> tuple[bool, str]:
        """Healthy unless a stage has held one batch longer than --stall-timeout (stuck, or
        blocked by a stuck stage after it). Waiting for input is healthy."""
        now = self.clock()
        for stage, since in list(self._busy.items()):
            if since is None:
                continue
            if stage == "source":
                if self.source.idle:
                    continue
                since = max(since, self.source.last_active)
            if now - since > self.settings.stall_timeout:
                return False, f"stalled: the {stage} stage has not moved for {now - since:.0f} s"
        return True, "ok"

    def counters(self) -> dict[str, Any]:
        """Every counter of the run, as reported in the progress and summary lines."""
        resequencer = self.instrument.resequencer
        return {
            "events_read": resequencer.received,
            "events_applied": self.instrument.applied,
            "rows_written": self.writer.rows_written,
            "pending": resequencer.pending,
            "rejects": dict(self.writer.rejects_by_reason),
            "anomalies": dict(self.instrument.book.anomalies),
            "gaps_skipped": resequencer.gaps_skipped,
            "seqs_lost": resequencer.seqs_lost,
            "last_seq": self.instrument.last_seq,
            "lines_read": self.source.line,
            "rotations": self.source.rotations,
            "truncations": self.source.truncations,
            "bytes_read": self.source.bytes_read,
            "seconds_since_last_input": round(time.monotonic() - self.source.last_data_at, 3),
        }

    def log_summary(self) -> None:
        """The closing log line: every counter, elapsed time and rate."""
        elapsed = self.clock() - self._started
        counters = self.counters()
        self.log.info(
            "summary",
            **counters,
            elapsed_s=round(elapsed, 3),
            events_per_s=round(counters["events_applied"] / max(elapsed, 1e-9)),
            stopped_by=self.stopped_by or "end_of_input",
        )
        if self.settings.interactive:
            from l3tol1.ui import print_summary

            print_summary(counters, elapsed)

    def _log_gaps(self, resequencer: Resequencer) -> None:
        for first, last in resequencer.skipped:
            self.log.warning("gap_skipped", first_seq=first, last_seq=last, lost=last - first + 1)
        resequencer.skipped.clear()


def _until(deadline: float | None, now: float) -> float:
    return math.inf if deadline is None else max(0.0, deadline - now)


def _check_paths(settings: Settings) -> None:
    """Refuse paths that would overwrite the input or write two streams into one file."""
    named = {
        "--input-file": settings.input_file,
        "--output-file": settings.output_file,
        "--reject-file": settings.reject_path,
    }
    if settings.checkpoint is not None:
        named["--checkpoint"] = settings.checkpoint
    seen: dict[str, str] = {}
    for option, path in named.items():
        key = os.path.realpath(path)
        if key in seen:
            raise ConfigError(f"{option} and {seen[key]} name the same file {path}")
        seen[key] = option
