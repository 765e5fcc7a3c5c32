"""Write L1 rows and rejects: formatting, flushing by size or age, fsync (SPEC §2, §4).

`L1Writer` buffers formatted rows and reject records and flushes them when ``batch_size`` rows
are buffered, when the oldest unflushed item is ``max_flush_interval`` seconds old, and at
shutdown. Every flush writes to the OS at once (readers see the rows); an fsync follows when the
flush was due to age, at shutdown, before a checkpoint, and otherwise at most once per
``max_flush_interval`` — so a row is durable within about one interval of being written, and a
fast batch run does not pay one fsync per 1000 rows.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import anyio

from l3tol1.errors import OutputError
from l3tol1.events import Reject, Row
from l3tol1.l1 import HEADER, L1Formatter

__all__ = ["FileSink", "L1Writer", "Sink"]


class Sink(Protocol):
    """An append-only destination that can be made durable and knows how much it holds."""

    size: int

    async def write(self, text: str) -> None:
        """Append text (UTF-8)."""
        ...

    async def sync(self) -> None:
        """Make everything written so far durable."""
        ...

    async def aclose(self) -> None:
        """Release the destination; safe to call twice."""
        ...


class FileSink:
    """An append-only file. OS errors become `OutputError` naming the file.

    :param keep: bytes to keep from an existing file (a checkpoint's record); None truncates.
    """

    def __init__(self, path: Path, *, keep: int | None = None) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
            size = os.fstat(self._fd).st_size
            if keep is None:
                keep = 0
            elif keep > size:
                os.close(self._fd)
                raise OutputError(
                    f"{path} holds {size} bytes but the checkpoint recorded {keep}:"
                    " something else changed it"
                )
            os.ftruncate(self._fd, keep)
            os.lseek(self._fd, keep, os.SEEK_SET)
        except OSError as exc:
            raise OutputError(f"cannot open {path} for writing: {exc.strerror}") from exc
        self.size = keep
        self._synced = True

    async def write(self, text: str) -> None:
        """Append ``text``; a short write is retried until all of it is written."""
        data = memoryview(text.encode("utf-8"))
        try:
            while data:
                written = os.write(self._fd, data)
                data = data[written:]
                self.size += written
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror}") from exc
        self._synced = False

    async def sync(self) -> None:
        """fsync the file (in a worker thread, so the pipeline keeps moving)."""
        if self._synced:
            return
        try:
            await anyio.to_thread.run_sync(os.fsync, self._fd)
        except OSError as exc:
            raise OutputError(f"cannot sync {self.path}: {exc.strerror}") from exc
        self._synced = True

    async def aclose(self) -> None:
        """Close the file; safe to call twice."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


class L1Writer:
    """Formats rows and rejects and flushes them to their sinks by size and by age."""

    def __init__(
        self,
        output: Sink,
        rejects: Sink,
        *,
        batch_size: int,
        max_flush_interval: float,
        observe_flush: Callable[[float], None] | None = None,
    ) -> None:
        self.output = output
        self.observe_flush = observe_flush  # told each flush's duration (metrics)
        self.rejects = rejects
        self.batch_size = batch_size
        self.max_flush_interval = max_flush_interval
        self.rows_written = 0
        self.rejects_by_reason: dict[str, int] = {}
        self._formatter = L1Formatter()
        self._rows: list[str] = []
        self._row_count = 0
        self._reject_lines: list[str] = []
        self._oldest: float | None = None  # when the oldest unflushed item was added
        self._last_sync = 0.0

    async def start(self, *, fresh: bool) -> None:
        """Write the output header when the output starts empty."""
        if fresh:
            await self.output.write(HEADER)

    def add(self, rows: list[Row], rejects: list[Reject], now: float) -> None:
        """Buffer rows and rejects; `due` tells when they must be flushed."""
        if rows:
            self._rows.append(self._formatter.format(rows))
            self._row_count += len(rows)
        if rejects:
            by_reason = self.rejects_by_reason
            for line, reason, raw in rejects:
                by_reason[reason] = by_reason.get(reason, 0) + 1
                record = {"line": line, "reason": reason, "raw": raw}
                self._reject_lines.append(json.dumps(record, ensure_ascii=False) + "\n")
        if self._oldest is None and (rows or rejects):
            self._oldest = now

    def deadline(self) -> float | None:
        """When the buffered items become due by age, or None if nothing is buffered."""
        return None if self._oldest is None else self._oldest + self.max_flush_interval

    async def flush_if_due(self, now: float) -> None:
        """Flush when ``batch_size`` rows wait (fsync at most once per interval) or by age."""
        deadline = self.deadline()
        if deadline is not None and now >= deadline:
            await self.flush(now, sync=True)
        elif self._row_count >= self.batch_size:
            await self.flush(now, sync=now - self._last_sync >= self.max_flush_interval)

    async def flush(self, now: float, *, sync: bool) -> None:
        """Write everything buffered; with ``sync``, make both files durable."""
        started = time.perf_counter()
        if self._rows:
            text = "".join(self._rows)
            self._rows.clear()
            count, self._row_count = self._row_count, 0
            await self.output.write(text)
            self.rows_written += count
        if self._reject_lines:
            text = "".join(self._reject_lines)
            self._reject_lines.clear()
            await self.rejects.write(text)
        self._oldest = None
        if sync:
            await self.output.sync()
            await self.rejects.sync()
            self._last_sync = now
        if self.observe_flush is not None:
            self.observe_flush(time.perf_counter() - started)

    async def aclose(self) -> None:
        """Close both sinks (without flushing: call `flush` first); safe to call twice."""
        await self.output.aclose()
        await self.rejects.aclose()
