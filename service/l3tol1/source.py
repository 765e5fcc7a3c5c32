"""Read the L3 file: chunked reads, complete lines only, following a growing file (SPEC §1, §7).

`FileSource.batches` yields one `Batch` of parsed events and rejects per chunk read. It reads
large chunks (no await per line), never parses a partial last line while following, and turns
undecodable or oversized lines into rejects without holding more than one chunk plus
``max_line`` bytes in memory.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiofiles
import anyio

from l3tol1.errors import InputError
from l3tol1.events import Batch, Reject
from l3tol1.rows import Reason, RowParser

__all__ = ["FileSource", "Position", "Source", "check_input"]

CHUNK_SIZE = 1 << 20
MAX_LINE = 64 * 1024
# How much of an oversized line is kept in its reject record.
_TOO_LONG_EXCERPT = 256


class Source(Protocol):
    """What the pipeline needs from an input: batches of events and rejects, in input order."""

    def batches(self) -> AsyncIterator[Batch]:
        """Yield batches until the input ends (no-follow) or forever (follow)."""
        ...


@dataclass(slots=True)
class Position:
    """Where reading stands: bytes consumed through the last complete line, and its number."""

    offset: int = 0
    line: int = 0


class FileSource:
    """Reads an L3 CSV file in chunks and parses it; with ``follow`` it tails it like tail -F.

    :param poll_interval: seconds between looks at the file while waiting for it to appear or
        grow (follow mode only).
    """

    def __init__(
        self,
        path: Path,
        *,
        follow: bool,
        poll_interval: float = 0.02,
        chunk_size: int = CHUNK_SIZE,
        max_line: int = MAX_LINE,
    ) -> None:
        self.path = path
        self.follow = follow
        self.poll_interval = poll_interval
        self.chunk_size = chunk_size
        self.max_line = max_line
        self.position = Position()
        self.parser: RowParser | None = None
        self.bytes_read = 0
        self._partial = b""  # bytes after the last newline read so far
        self._skipping = False  # inside an oversized line, discarding to its newline

    async def batches(self) -> AsyncIterator[Batch]:
        """Yield parsed batches in input order.

        :raises InputError: the file is missing (no-follow), unreadable, or lacks a column.
        """
        file = await self._open()
        try:
            while True:
                try:
                    chunk = await file.read(self.chunk_size)
                except OSError as exc:
                    raise InputError(f"cannot read input {self.path}: {exc.strerror}") from exc
                if chunk:
                    self.bytes_read += len(chunk)
                    batch = self._take(chunk)
                    if batch.events or batch.rejects:
                        yield batch
                    continue
                if not self.follow:
                    yield self._finish()
                    return
                await anyio.sleep(self.poll_interval)
        finally:
            with anyio.CancelScope(shield=True):
                await file.close()

    async def _open(self) -> aiofiles.threadpool.binary.AsyncBufferedReader:
        while True:
            try:
                return await aiofiles.open(self.path, "rb")
            except FileNotFoundError as exc:
                if not self.follow:
                    raise InputError(f"input file {self.path} does not exist") from exc
            except IsADirectoryError as exc:
                raise InputError(f"input {self.path} is a directory, not a file") from exc
            except OSError as exc:
                raise InputError(f"cannot open input {self.path}: {exc.strerror}") from exc
            await anyio.sleep(self.poll_interval)

    def _take(self, chunk: bytes) -> Batch:
        """Split a chunk into complete lines and parse them; keep the partial tail."""
        batch = Batch()
        if self._skipping:
            cut = chunk.find(b"\n")
            if cut < 0:
                self.position.offset += len(chunk)
                return batch
            self._skipping = False
            self.position.offset += cut + 1
            chunk = chunk[cut + 1 :]
        data = self._partial + chunk if self._partial else chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            self._partial = data
            if len(data) > self.max_line:
                self._reject_oversized(batch)
            return batch
        self._partial = data[cut + 1 :]
        self._parse_lines(data[:cut], batch)
        self.position.offset += cut + 1
        if len(self._partial) > self.max_line:
            self._reject_oversized(batch)
        return batch

    def _finish(self) -> Batch:
        """End of input without follow: a last line without its newline still counts."""
        batch = Batch(end_of_input=True)
        if self._partial and not self._skipping:
            self._parse_lines(self._partial, batch)
            self.position.offset += len(self._partial)
            self._partial = b""
        if self.parser is None:
            raise InputError(f"input {self.path} is empty: it has no header line")
        return batch

    def _parse_lines(self, data: bytes, batch: Batch) -> None:
        try:
            lines = data.decode("utf-8").split("\n")
        except UnicodeDecodeError:
            lines = None
        if lines is None or max(map(len, lines)) > self.max_line:
            self._parse_lines_carefully(data, batch)
            return
        first_line = self.position.line + 1
        if self.parser is None:
            self.parser = self._header(lines[0])
            lines = lines[1:]
            first_line += 1
        events, rejects = self.parser.parse(lines, first_line)
        batch.events.extend(events)
        batch.rejects.extend(rejects)
        self.position.line = first_line + len(lines) - 1

    def _parse_lines_carefully(self, data: bytes, batch: Batch) -> None:
        """The slow path for a chunk holding invalid UTF-8 or an oversized line."""
        for raw in data.split(b"\n"):
            self.position.line += 1
            line_no = self.position.line
            if len(raw) > self.max_line:
                if self.parser is None:
                    raise self._unusable_header(f"longer than {self.max_line} bytes")
                batch.rejects.append(_oversized_reject(line_no, raw))
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                if self.parser is None:
                    raise self._unusable_header("not valid UTF-8") from None
                batch.rejects.append(
                    (line_no, Reason.UTF8, raw.decode("utf-8", errors="backslashreplace"))
                )
                continue
            if self.parser is None:
                self.parser = self._header(text)
                continue
            result = self.parser.parse_row(text, line_no)
            if len(result) == 3:
                batch.rejects.append(result)  # type: ignore[arg-type]
            else:
                batch.events.append(result)  # type: ignore[arg-type]

    def _reject_oversized(self, batch: Batch) -> None:
        """Reject the line being read once it passes ``max_line``; discard it to its newline."""
        if self.parser is None:
            raise self._unusable_header(f"longer than {self.max_line} bytes")
        self.position.line += 1
        batch.rejects.append(_oversized_reject(self.position.line, self._partial))
        self.position.offset += len(self._partial)
        self._partial = b""
        self._skipping = True

    def _header(self, text: str) -> RowParser:
        return RowParser(text, source=f"input {self.path}")

    def _unusable_header(self, why: str) -> InputError:
        return InputError(f"input {self.path}: the header (line 1) is {why}")


def _oversized_reject(line: int, raw: bytes) -> Reject:
    excerpt = raw[:_TOO_LONG_EXCERPT].decode("utf-8", errors="backslashreplace")
    return (line, Reason.TOO_LONG, f"{excerpt}... ({len(raw)}+ bytes)")


def check_input(path: Path, *, max_line: int = MAX_LINE) -> RowParser:
    """Open ``path`` and read its header now, so a bad input fails before any output is touched.

    :raises InputError: the file is missing, unreadable, empty, or its header is unusable.
    """
    try:
        with open(path, "rb") as file:
            head = file.readline(max_line + 1)
    except FileNotFoundError as exc:
        raise InputError(f"input file {path} does not exist") from exc
    except IsADirectoryError as exc:
        raise InputError(f"input {path} is a directory, not a file") from exc
    except OSError as exc:
        raise InputError(f"cannot read input {path}: {exc.strerror}") from exc
    if not head.strip():
        raise InputError(f"input {path} is empty: it has no header line")
    if len(head) > max_line:
        raise InputError(f"input {path}: the header (line 1) is longer than {max_line} bytes")
    try:
        header = head.decode("utf-8").rstrip("\n")
    except UnicodeDecodeError as exc:
        raise InputError(f"input {path}: the header (line 1) is not valid UTF-8") from exc
    return RowParser(header, source=f"input {path}")


def file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of ``path``, or None if it does not exist."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino
