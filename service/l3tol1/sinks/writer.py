"""When buffered rows reach the disk: flushing by size or age, fsync, parts (SPEC §2, §6, §11).

`Writer` holds the L1 sink and the reject sink. Rows and rejects are flushed when
``batch_size`` quotes are buffered, when the oldest unflushed item is ``max_flush_interval``
seconds old, when a followed input has nothing more for now (no reason to wait for rows that
are not coming: this keeps append-to-durable latency to a few milliseconds), and at shutdown.
Every flush writes to the OS at once (readers see the rows); an
fsync follows when the flush was due to age, at shutdown, before a checkpoint, and otherwise at
most once per ``max_flush_interval``, so a row is durable within about one interval of being
written and a fast batch run does not pay one fsync per batch.

A part-based sink (Parquet) closes its parts when it says so (full, or old enough). Without a
checkpoint the writer closes and commits them itself; with one, a part closes only at a
checkpoint cut, so the writer says it wants one instead (`flush_if_due` returns True).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from l3tol1.core.records import Quote, Reject
from l3tol1.sinks.base import Sink
from l3tol1.sinks.rejects import RejectSink

__all__ = ["Writer"]


class Writer:
    """Buffers quotes and rejects into their sinks and flushes them by size and by age.

    :param checkpointing: parts of a cut-aligned sink close at checkpoint cuts only.
    """

    def __init__(
        self,
        output: Sink,
        rejects: RejectSink,
        *,
        batch_size: int,
        max_flush_interval: float,
        checkpointing: bool = False,
        observe_flush: Callable[[float], None] | None = None,
    ) -> None:
        self.output = output
        self.rejects = rejects
        self.batch_size = batch_size
        self.max_flush_interval = max_flush_interval
        self.parts_at_cuts = checkpointing and output.cut_aligned
        self.observe_flush = observe_flush  # told each flush's duration (metrics)
        self._oldest: float | None = None  # when the oldest unflushed item was added
        self._last_sync = 0.0

    def add(self, quotes: list[Quote], rejects: list[Reject], now: float) -> None:
        """Buffer quotes and rejects; `deadline` tells when they must be flushed."""
        if quotes:
            self.output.add(quotes)
        if rejects:
            self.rejects.add(rejects)
        if self._oldest is None and (quotes or rejects):
            self._oldest = now

    @property
    def holds_rows(self) -> bool:
        """Whether rows or rejects wait to be flushed."""
        return self._oldest is not None

    def deadline(self) -> float | None:
        """When something buffered becomes due by age, or None if nothing waits."""
        due = None if self._oldest is None else self._oldest + self.max_flush_interval
        part = None if self.parts_at_cuts else self.output.deadline()
        if part is None or (due is not None and due < part):
            return due
        return part

    async def flush_if_due(self, now: float) -> bool:
        """Flush when ``batch_size`` quotes wait (fsync at most once per interval) or by age;
        close a due part. True when a part is due that closes only at a checkpoint cut: a cut
        is wanted soon."""
        deadline = None if self._oldest is None else self._oldest + self.max_flush_interval
        if deadline is not None and now >= deadline:
            await self.flush(now, sync=True)
        elif self.output.buffered >= self.batch_size:
            await self.flush(now, sync=now - self._last_sync >= self.max_flush_interval)
        cut_wanted = False
        if self.output.part_due(now):
            if self.parts_at_cuts:
                cut_wanted = True  # the last, partial part closes at the cut
            else:
                part_deadline = self.output.deadline()
                old = part_deadline is not None and now >= part_deadline
                await self.output.close_parts(all_rows=old)
        if not self.parts_at_cuts:
            await self.output.commit()  # without a checkpoint, a closed part shows at once
        return cut_wanted

    async def flush(self, now: float, *, sync: bool) -> None:
        """Write everything buffered; with ``sync``, make both outputs durable."""
        started = time.perf_counter()
        await self.output.flush(sync=sync)
        await self.rejects.flush(sync=sync)
        self._oldest = None
        if sync:
            self._last_sync = now
        if self.observe_flush is not None:
            self.observe_flush(time.perf_counter() - started)

    async def finish(self, now: float) -> None:
        """The end of a run: everything written and durable; a part closed and, when no
        checkpoint is to name it, made visible."""
        await self.flush(now, sync=True)
        if not self.parts_at_cuts:
            await self.output.close_parts(all_rows=True)
            await self.output.commit()

    async def aclose(self) -> None:
        """Close both sinks (without flushing: call `flush` first); safe to call twice."""
        await self.output.aclose()
        await self.rejects.aclose()
