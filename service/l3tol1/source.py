"""Read the L3 file: chunked reads, complete lines only, following a growing file (SPEC §1, §7).

`FileSource.batches` yields one `Batch` of parsed events and rejects per chunk read. It reads
large chunks (no await per line), never parses a partial last line while following, and turns
undecodable or oversized lines into rejects without holding more than one chunk plus
``max_line`` bytes in memory.

Following works like ``tail -F``, checked each time the open file has no more data:
- the path names another file (rename-and-create rotation, or deletion then re-creation): the old
  file has been read to its end; its last line is taken even without a newline, and the new file
  is read from its start, header first;
- the open file is shorter than what was read (copytruncate): it is read again from its start;
- the path is missing: keep the old file open (a writer may still append to it) and wait.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiofiles
import anyio

from l3tol1.checkpoint import FINGERPRINT_BYTES, fingerprint
from l3tol1.errors import InputError
from l3tol1.events import Batch, Reject
from l3tol1.log import get_logger
from l3tol1.rows import Reason, RowParser

__all__ = ["FileSource", "Position", "Source", "check_input"]

CHUNK_SIZE = 1 << 18
MAX_LINE = 64 * 1024
# How much of an oversized line is kept in its reject record.
_TOO_LONG_EXCERPT = 256


class Source(Protocol):
    """What the pipeline needs from an input: batches of events and rejects, in input order."""

    def batches(self) -> AsyncIterator[Batch]:
        """Yield batches until the input ends (no-follow) or forever (follow)."""
        ...


@dataclass(frozen=True, slots=True)
class Position:
    """Where reading stands after a batch: which file, the bytes consumed through the last
    complete line, and that line's number. A checkpoint resumes from here."""

    path: str
    dev: int
    ino: int
    head: bytes
    offset: int
    line: int

    def record(self) -> dict[str, Any]:
        """The checkpoint's ``input`` and ``source`` entries."""
        head = self.head[: self.offset]
        return {
            "input": {
                "path": self.path,
                "dev": self.dev,
                "ino": self.ino,
                "head_len": len(head),
                "head_sha256": fingerprint(head),
            },
            "source": {"offset": self.offset, "line": self.line},
        }


class FileSource:
    """Reads an L3 CSV file in chunks and parses it; with ``follow`` it tails it like tail -F.

    :param poll_interval: seconds between looks at the file while waiting for it to appear or
        grow (follow mode only).
    :param resume: start in this file (the checkpoint's, perhaps renamed by rotation) at this
        byte offset and line number instead of at the start of ``path``.
    """

    def __init__(
        self,
        path: Path,
        *,
        follow: bool,
        poll_interval: float = 0.02,
        chunk_size: int = CHUNK_SIZE,
        max_line: int = MAX_LINE,
        resume: tuple[Path, int, int] | None = None,
    ) -> None:
        self.path = path
        self.follow = follow
        self.poll_interval = poll_interval
        self.chunk_size = chunk_size
        self.max_line = max_line
        self.bytes_read = 0
        # For health and metrics: when the source last did anything, last read new bytes, and
        # whether it is idle now (waiting for the file to appear or grow: nothing to do).
        self.last_active = self.last_data_at = time.monotonic()
        self.idle = False
        self.rotations = 0
        self.truncations = 0
        self._resume = resume
        self._log = get_logger()
        self._reset()

    def _reset(self) -> None:
        """Forget the current file: the next bytes are a new file's, header first."""
        self.parser: RowParser | None = None
        self.offset = 0  # bytes consumed through the last complete line
        self.line = 0  # number of the last line consumed
        self._head = b""  # the file's first bytes, for its fingerprint
        self._partial = b""  # bytes after the last newline read so far
        self._skipping = False  # inside an oversized line, discarding to its newline
        self._identity = (0, 0)

    @property
    def position(self) -> Position:
        """Where reading stands now (after the last batch yielded)."""
        return Position(
            os.path.abspath(self.path), *self._identity, self._head, self.offset, self.line
        )

    async def batches(self) -> AsyncIterator[Batch]:
        """Yield parsed batches in input order, each with the `Position` after it.

        :raises InputError: the file is missing (no-follow), unreadable, or lacks a column.
        """
        file = await self._open_first()
        try:
            while True:
                chunk = await self._read(file)
                if chunk:
                    batch = self._take(chunk)
                    if batch.events or batch.rejects:
                        batch.position = self.position
                        yield batch
                    continue
                if not self.follow:
                    batch = self._finish()
                    batch.end_of_input = True
                    batch.position = self.position
                    yield batch
                    return
                change = self._look_for_change(file.fileno())
                if change == "rotated":
                    # One more read: what was appended before the rotation is the old file's.
                    chunk = await self._read(file)
                    if chunk:
                        batch = self._take(chunk)
                        batch.position = self.position
                        yield batch
                        continue
                elif change is None:
                    await self._wait()
                    continue
                # The old file is read to its end: its last line counts even without a newline.
                batch = self._finish()
                batch.position = self.position
                if batch.events or batch.rejects:
                    yield batch
                self._reset()
                if change == "truncated":
                    self.truncations += 1
                    self._log.warning("input_truncated", path=str(self.path))
                    await file.seek(0)
                    self._identity = _identity(os.fstat(file.fileno()))
                else:
                    self.rotations += 1
                    self._log.info("input_rotated", path=str(self.path))
                    new = await self._open(self.path)
                    await file.close()
                    file = new
                # A checkpoint from here on names the new file, even before it has a row.
                yield Batch(position=self.position)
        finally:
            with anyio.CancelScope(shield=True):
                await file.close()

    async def _open_first(self) -> Any:
        if self._resume is None:
            return await self._open(self.path)
        path, offset, line = self._resume
        file = await self._open(path)
        # The header is read again for the column layout, then reading goes on at the offset.
        header = await file.read(min(offset, self.max_line + 1))
        self._take_header(header.split(b"\n", 1)[0], path)
        self._head = header[:FINGERPRINT_BYTES]
        await file.seek(offset)
        self.offset, self.line = offset, line
        self._log.info("resumed", path=str(path), offset=offset, line=line)
        return file

    async def _open(self, path: Path) -> Any:
        while True:
            try:
                file = await aiofiles.open(path, "rb")
            except FileNotFoundError as exc:
                if not self.follow:
                    raise InputError(f"input file {path} does not exist") from exc
            except IsADirectoryError as exc:
                raise InputError(f"input {path} is a directory, not a file") from exc
            except OSError as exc:
                raise InputError(f"cannot open input {path}: {exc.strerror}") from exc
            else:
                self._identity = _identity(os.fstat(file.fileno()))
                return file
            await self._wait()

    async def _wait(self) -> None:
        """Sleep one poll interval, marked idle: there is nothing to do until the file changes."""
        self.idle = True
        try:
            await anyio.sleep(self.poll_interval)
        finally:
            self.idle = False
            self.last_active = time.monotonic()

    async def _read(self, file: Any) -> bytes:
        try:
            chunk: bytes = await file.read(self.chunk_size)
        except OSError as exc:
            raise InputError(f"cannot read input {self.path}: {exc.strerror}") from exc
        self.bytes_read += len(chunk)
        self.last_active = now = time.monotonic()
        if chunk:
            self.last_data_at = now
        if len(self._head) < FINGERPRINT_BYTES and chunk:
            self._head += chunk[: FINGERPRINT_BYTES - len(self._head)]
        return chunk

    def _look_for_change(self, fd: int) -> str | None:
        """At the end of the open file: "rotated", "truncated", or None (wait for more)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None  # deleted or being rotated: keep the old file until a new one appears
        if _identity(st) != self._identity:
            return "rotated"
        if st.st_size < self.offset + len(self._partial):
            return "truncated"
        # Truncated and rewritten past our offset between two looks: the size alone cannot
        # tell, but the first bytes (header and first rows) differ from what we read.
        head = self._head[: self.offset]
        if head and os.pread(fd, len(head), 0) != head:
            return "truncated"
        return None

    def _take(self, chunk: bytes) -> Batch:
        """Split a chunk into complete lines and parse them; keep the partial tail."""
        batch = Batch()
        if self._skipping:
            cut = chunk.find(b"\n")
            if cut < 0:
                self.offset += len(chunk)
                return batch
            self._skipping = False
            self.offset += cut + 1
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
        self.offset += cut + 1
        if len(self._partial) > self.max_line:
            self._reject_oversized(batch)
        return batch

    def _finish(self) -> Batch:
        """End of a file: a last line without its newline still counts."""
        batch = Batch()
        if self._partial:
            partial = self._partial
            self._partial = b""
            batch = self._take(partial + b"\n")
            self.offset -= 1  # the newline was ours, not the file's
        if self.parser is None and not self.follow:
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
        first_line = self.line + 1
        if self.parser is None:
            self._take_header(data.split(b"\n", 1)[0], self.path)
            lines = lines[1:]
            first_line += 1
        events, rejects = self.parser.parse(lines, first_line)  # type: ignore[union-attr]
        batch.events.extend(events)
        batch.rejects.extend(rejects)
        self.line = first_line + len(lines) - 1

    def _parse_lines_carefully(self, data: bytes, batch: Batch) -> None:
        """The slow path for a chunk holding invalid UTF-8 or an oversized line."""
        for raw in data.split(b"\n"):
            if self.parser is None:
                self._take_header(raw, self.path)
                self.line += 1
                continue
            self.line += 1
            if len(raw) > self.max_line:
                batch.rejects.append(_oversized_reject(self.line, raw))
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                batch.rejects.append(
                    (self.line, Reason.UTF8, raw.decode("utf-8", errors="backslashreplace"))
                )
                continue
            result = self.parser.parse_row(text, self.line)
            if len(result) == 3:
                batch.rejects.append(result)  # type: ignore[arg-type]
            else:
                batch.events.append(result)  # type: ignore[arg-type]

    def _take_header(self, raw: bytes, path: Path) -> None:
        if len(raw) > self.max_line:
            raise InputError(f"input {path}: the header (line 1) is longer than {self.max_line}")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"input {path}: the header (line 1) is not valid UTF-8") from exc
        self.parser = RowParser(text, source=f"input {path}")

    def _reject_oversized(self, batch: Batch) -> None:
        """Reject the line being read once it passes ``max_line``; discard it to its newline."""
        if self.parser is None:
            raise InputError(
                f"input {self.path}: the header (line 1) is longer than {self.max_line} bytes"
            )
        self.line += 1
        batch.rejects.append(_oversized_reject(self.line, self._partial))
        self.offset += len(self._partial)
        self._partial = b""
        self._skipping = True


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _oversized_reject(line: int, raw: bytes) -> Reject:
    excerpt = raw[:_TOO_LONG_EXCERPT].decode("utf-8", errors="backslashreplace")
    return (line, Reason.TOO_LONG, f"{excerpt}... ({len(raw)}+ bytes)")


def check_input(path: Path, *, follow: bool, max_line: int = MAX_LINE) -> None:
    """Open ``path`` and read its header now, so a bad input fails before any output is touched.

    When following, a missing file or one without a complete first line yet is fine.

    :raises InputError: the file is missing (no-follow), unreadable, empty (no-follow), or its
        header is unusable.
    """
    try:
        with open(path, "rb") as file:
            head = file.readline(max_line + 1)
    except FileNotFoundError as exc:
        if follow:
            return
        raise InputError(f"input file {path} does not exist") from exc
    except IsADirectoryError as exc:
        raise InputError(f"input {path} is a directory, not a file") from exc
    except OSError as exc:
        raise InputError(f"cannot read input {path}: {exc.strerror}") from exc
    if follow and not head.endswith(b"\n") and len(head) <= max_line:
        return  # the header is still being written
    if not head.strip():
        raise InputError(f"input {path} is empty: it has no header line")
    if len(head) > max_line:
        raise InputError(f"input {path}: the header (line 1) is longer than {max_line} bytes")
    try:
        header = head.decode("utf-8").rstrip("\n")
    except UnicodeDecodeError as exc:
        raise InputError(f"input {path}: the header (line 1) is not valid UTF-8") from exc
    RowParser(header, source=f"input {path}")
