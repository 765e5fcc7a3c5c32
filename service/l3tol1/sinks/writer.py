"""When buffered rows reach the disk: flushing by size or age, fsync (SPEC §2, §6).

`Writer` holds the L1 sink and the reject sink and flushes both when ``batch_size`` quotes are
buffered, when the oldest unflushed item is ``max_flush_interval`` seconds old, and at shutdown.
Every flush writes to the OS at once (readers see the rows); an fsync follows when the flush was
due to age, at shutdown, before a checkpoint, and otherwise at most once per
``max_flush_interval``, so a row is durable within about one interval of being written and a
fast batch run does not pay one fsync per batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from l3tol1.core.records import Quote, Reject
from l3tol1.sinks.base import Sink
from l3tol1.sinks.rejects import RejectSink

__all__ = ["Writer"]


class Writer:
    """Buffers quotes and rejects into their sinks and flushes them by size and by age."""

    def __init__(
        self,
        output: Sink,
        rejects: RejectSink,
        *,
        batch_size: int,
        max_flush_interval: float,
        observe_flush: Callable[[float], None] | None = None,
    ) -> None:
        self.output = output
        self.rejects = rejects
        self.batch_size = batch_size
        self.max_flush_interval = max_flush_interval
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

    def deadline(self) -> float | None:
        """When the buffered items become due by age, or None if nothing is buffered."""
        return None if self._oldest is None else self._oldest + self.max_flush_interval

    async def flush_if_due(self, now: float) -> None:
        """Flush when ``batch_size`` quotes wait (fsync at most once per interval) or by age."""
        deadline = self.deadline()
        if deadline is not None and now >= deadline:
            await self.flush(now, sync=True)
        elif self.output.buffered >= self.batch_size:
            await self.flush(now, sync=now - self._last_sync >= self.max_flush_interval)

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

    async def aclose(self) -> None:
        """Close both sinks (without flushing: call `flush` first); safe to call twice."""
        await self.output.aclose()
        await self.rejects.aclose()
