"""Read an L3 file in chunks, following it like ``tail -F`` (SPEC §7).

`FileSource.chunks` yields one `Chunk` of whole lines per read. It reads large chunks (no await
per line), never hands out a partial last line while following, and holds at most one chunk plus
``max_line`` bytes of any line.

Following, checked each time the open file has no more data:
- the path names another file (rename-and-create rotation, or deletion then re-creation): the old
  file has been read to its end; its last line is taken even without a newline, and the new file
  is read from its start, header first;
- the open file is shorter than what was read, or its first bytes changed (copytruncate, or a
  rewrite between two looks): it is read again from its start;
- the path is missing: keep the old file open (a writer may still append to it) and wait.

A followed file stays plain CSV: a file met while following (one that appears after being
waited for, the new file of a rotation, a file rewritten from its start) whose first bytes are
a compression's magic or DBN's ends the input there (`Chunk.damage`), with a line that says so,
instead of being read as lines (issue 17). Its first bytes are awaited as its header is.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

import aiofiles
import anyio
from anyio.lowlevel import checkpoint

from l3tol1.errors import InputError
from l3tol1.log import get_logger
from l3tol1.sources.base import (
    FINGERPRINT_BYTES,
    Chunk,
    Position,
    decode_header,
    header_too_long,
    not_converted,
)
from l3tol1.sources.codecs import codec_of, too_short_to_tell
from l3tol1.sources.dbn import DBN_MAGIC
from l3tol1.sources.lines import HeaderTooLong, Lines, LineSplitter, take_header

__all__ = ["CHUNK_SIZE", "FileSource"]

CHUNK_SIZE = 1 << 19
_LONGEST_NOTE_INTERVAL = 600.0  # between two `waiting_for_input` notes of one wait


class FileSource:
    """An uncompressed L3 file, read to its end or followed.

    :param follow: keep reading as the file grows, across rotation and truncation.
    :param poll_interval: seconds between looks at the file while waiting for it to appear or
        grow (follow mode only).
    :param resume: start in this file (the checkpoint's, perhaps renamed by rotation) at this
        byte offset and line number instead of at the start of ``path``.
    :param input_format: "csv" reads a file that starts like DBN as CSV (``--input-format``);
        a compressed file is never followed.
    :param waiting_note: seconds after which a missing input that is waited for is logged
        again (``waiting_for_input``); the interval doubles after each note, up to ten minutes.
    """

    def __init__(
        self,
        path: Path,
        *,
        follow: bool,
        poll_interval: float = 0.02,
        chunk_size: int = CHUNK_SIZE,
        max_line: int | None = None,
        resume: tuple[Path, int, int] | None = None,
        input_format: str | None = None,
        waiting_note: float = 30.0,
    ) -> None:
        self.path = path
        self.waiting_note = waiting_note
        self._dbn_magic = b"" if input_format == "csv" else DBN_MAGIC
        self.follow = follow
        self.poll_interval = poll_interval
        self.chunk_size = chunk_size
        self._max_line = max_line
        self.bytes_read = 0
        self.size: int | None = None
        # For health and metrics: when the source last did anything, last read new bytes, and
        # whether it is idle now (waiting for the file to appear or grow: nothing to do).
        self.last_active = self.last_data_at = time.monotonic()
        self.idle = False
        self.rotations = 0
        self.truncations = 0
        self._resume = resume
        self._file: Any = None
        self._direct = False  # the open file is a regular file: read it without a thread hop
        self._said_end = False
        self._said_inaccessible = False  # the path cannot be looked at (logged once)
        self._log = get_logger()
        self._start_file(b"", how="is")

    def _start_file(self, head: bytes, identity: tuple[int, int] = (0, 0), *, how: str) -> None:
        """Forget the current file: the next bytes are a new file's, header first; ``how`` it
        came ("was replaced by"...), for the error if it turns out not to be plain CSV."""
        kwargs = {} if self._max_line is None else {"max_line": self._max_line}
        self._lines = LineSplitter(**kwargs)
        self._header_pending = True
        self._head = head  # the file's first bytes, for its fingerprint
        self._identity = identity
        self._kind_pending: str | None = how  # its first bytes are not checked yet

    @property
    def position(self) -> Position:
        """Where reading stands now (after the last chunk yielded)."""
        return Position(
            os.path.abspath(self.path),
            *self._identity,
            self._head,
            self._lines.offset,
            self._lines.line,
        )

    async def open(self) -> str | None:
        """Open the file and return its header line, if the file and a whole header exist.

        :raises InputError: the file is missing (not following), unreadable, or its header is
            longer than the line limit or not UTF-8.
        """
        if self._resume is not None:
            path, offset, line = self._resume
            self._file = await self._open(path)
            if offset == 0:
                return self._peek_header()
            # The header is read again for the column layout; reading goes on at the offset.
            header = self._peek_header()
            if header is None:
                raise InputError(f"input {path} no longer starts with its header line")
            self._header_pending = False
            self._kind_pending = None  # plain CSV: its header was read before
            self._resume_header = header
            self._lines.offset, self._lines.line = offset, line
            # The consumed bytes only: the reads from the offset on extend it.
            self._head = os.pread(self._file.fileno(), min(offset, FINGERPRINT_BYTES), 0)
            await self._file.seek(offset)
            self._log.info("resumed", path=str(path), offset=offset, line=line)
            return header
        self._file = await self._open(self.path, wait=False)
        return None if self._file is None else self._peek_header()

    def _peek_header(self) -> str | None:
        """The first line of the open file, read without consuming it (None: not whole yet)."""
        max_line = self._lines.max_line
        head = os.pread(self._file.fileno(), max_line + 2, 0)
        self._check_kind(head)
        cut = head.find(b"\n")
        if cut < 0:
            if len(head) > max_line:
                raise header_too_long(str(self.path), max_line)
            if self.follow:
                return None  # still being written
            if not head:
                raise InputError(f"input {self.path} is empty: it has no header line")
            cut = len(head)  # a file of only a header without its newline
        if cut > max_line:
            raise header_too_long(str(self.path), max_line)
        return decode_header(head[:cut].removesuffix(b"\r"), str(self.path))

    async def chunks(self) -> AsyncIterator[Chunk]:
        """Yield chunks of whole lines in input order, each with the position after it.

        A file that cannot be read on — a read error, a header (of a file met while following)
        that is not UTF-8 or too long, a file without a header — ends the input there: the last
        chunk carries the error (`Chunk.damage`) and the position of the chunk before it, so a
        checkpoint never claims what was not converted.
        """
        last = self.position
        try:
            async with contextlib.aclosing(self._chunks()) as chunks:
                async for chunk in chunks:
                    last = chunk.position
                    yield chunk
        except InputError as exc:
            yield Chunk(b"", last.line + 1, last, end_of_input=True, damage=exc)

    async def _chunks(self) -> AsyncGenerator[Chunk, None]:
        """The chunks of `chunks`, until the end of the input (no-follow) or forever.

        :raises InputError: the file is missing, unreadable, or has no usable header.
        """
        if self._file is None:
            self._file = await self._open(self.path)
        file = self._file
        if not self._header_pending and self._resume is not None:
            # Resumed past the header: the parser still needs it, before any line.
            yield Chunk(b"", self._lines.line + 1, self.position, header=self._resume_header)
        last = self.position
        while True:
            data = await self._read(file)
            if data:
                self._check_kind(self._head)
                chunk = self._chunk(self._lines.feed(data))
                # A short read of a regular file: its end, for now.
                chunk.caught_up = self.follow and len(data) < self.chunk_size
                if chunk.data or chunk.rejects or chunk.header or chunk.position != last:
                    last = chunk.position
                    yield chunk
                continue
            change: str | None = "truncated"
            if data is None:
                pass  # rewritten from its start under us: what the read brought is not ours
            elif not self.follow:
                chunk = self._chunk(self._lines.finish())
                if self._header_pending:
                    raise InputError(f"input {self.path} is empty: it has no header line")
                chunk.end_of_input = True
                yield chunk
                return
            else:
                change = self._look_for_change(file.fileno())
            if change == "rotated":
                # One more read: what was appended before the rotation is the old file's.
                data = await self._read(file)
                if data:
                    chunk = self._chunk(self._lines.feed(data))
                    last = chunk.position
                    yield chunk
                    continue
            elif change is None:
                self._note_end_of_input()
                await self._wait()
                continue
            # The old file is read to its end: its last line counts even without a newline.
            chunk = self._chunk(self._lines.finish())
            if chunk.data or chunk.rejects:
                yield chunk
            if change == "truncated":
                self.truncations += 1
                self._log.warning("input_truncated", path=str(self.path))
                await file.seek(0)
                self._start_file(b"", _identity(os.fstat(file.fileno())), how="was rewritten as")
            else:
                self.rotations += 1
                self._log.info("input_rotated", path=str(self.path))
                new = await self._open(self.path)
                await file.close()
                self._file = file = new
                self._start_file(b"", self._identity, how="was replaced by")
            # A checkpoint from here on names the new file, even before it has a line.
            last = self.position
            yield Chunk(b"", 1, last)

    def _check_kind(self, head: bytes) -> None:
        """Look at the first bytes of a file not checked yet: plain CSV is read on; a
        compressed or DBN file cannot be followed. Too few bytes to tell: look again later.

        :raises InputError: the file is compressed or DBN.
        """
        how = self._kind_pending
        if how is None or too_short_to_tell(head, self._dbn_magic):
            return
        self._kind_pending = None
        codec = codec_of(head)
        if codec is not None:
            what = f"a {codec}-compressed file"
        elif self._dbn_magic and head.startswith(self._dbn_magic):
            what = "a Databento DBN file"
        else:
            return
        raise InputError(
            f"input {self.path} {how} {what}: a followed file must stay plain CSV; convert"
            " that file in a run of its own (l3tol1 reads a compressed or DBN file to its end)"
        )

    def _chunk(self, lines: Lines) -> Chunk:
        """The chunk of these lines: the header split off if the file's first line is in it."""
        header = None
        if self._header_pending:
            try:
                raw, lines = take_header(lines)
            except HeaderTooLong:
                raise header_too_long(str(self.path), self._lines.max_line) from None
            if raw is not None:
                header = decode_header(raw, str(self.path))
                self._header_pending = False
        return Chunk(lines.data, lines.first_line, self.position, header, lines.rejects)

    async def aclose(self) -> None:
        """Close the file; safe to call twice."""
        if self._file is not None:
            file, self._file = self._file, None
            with anyio.CancelScope(shield=True):
                await file.close()

    async def _open(self, path: Path, *, wait: bool = True) -> Any:
        """Open ``path``; when following, wait for it to exist (unless ``wait`` is False),
        saying so at once and again now and then (issue 17: a wait must never be silent)."""
        since = next_note = 0.0
        interval = self.waiting_note
        while True:
            try:
                file = await aiofiles.open(path, "rb")
            except FileNotFoundError as exc:
                if not self.follow:
                    raise InputError(f"input file {path} does not exist") from exc
                if not wait:
                    return None
            except IsADirectoryError as exc:
                raise InputError(f"input {path} is a directory, not a file") from exc
            except OSError as exc:
                raise InputError(f"cannot open input {path}: {exc.strerror}") from exc
            else:
                st = os.fstat(file.fileno())
                self._identity = _identity(st)
                self.size = st.st_size
                self._direct = stat.S_ISREG(st.st_mode)
                return file
            self._kind_pending = "appeared as"  # not checked before the run, as it was not there
            now = time.monotonic()
            if not since or now >= next_note:
                since = since or now
                self._log.info(
                    "waiting_for_input",
                    path=str(path),
                    waited_s=round(now - since, 1),
                    hint=f"input {path} does not exist yet; l3tol1 waits for it (--follow);"
                    " use --no-follow to fail instead",
                )
                next_note = now + interval
                interval = min(2 * interval, _LONGEST_NOTE_INTERVAL)
            await self._wait()

    async def _wait(self) -> None:
        """Sleep one poll interval, marked idle: there is nothing to do until the file changes."""
        self.idle = True
        try:
            await anyio.sleep(self.poll_interval)
        finally:
            self.idle = False
            self.last_active = time.monotonic()

    def _note_end_of_input(self) -> None:
        """Say once that the whole input was read and l3tol1 now waits for more (--follow)."""
        if not self._said_end:
            self._said_end = True
            self._log.info(
                "end_of_input_reached",
                path=str(self.path),
                lines=self._lines.line,
                hint="following the file for new lines; use --no-follow to stop at its end",
            )

    async def _read(self, file: Any) -> bytes | None:
        """The next bytes of the open file (b"" at its end); None when its first bytes are no
        longer those read before: it was rewritten from its start (truncated and grown again,
        perhaps past our offset), and the bytes at our offset belong to the new content."""
        try:
            if self._direct:
                # A regular file's read is served from the page cache, or blocks briefly on a
                # disk: cheaper in the loop than a thread hop for each chunk (aiofiles). The
                # checkpoint keeps the read a point where a stop signal ends the reading.
                await checkpoint()
                data: bytes = os.read(file.fileno(), self.chunk_size)
            else:
                data = await file.read(self.chunk_size)
        except OSError as exc:
            splitter = self._lines
            raise InputError(
                f"cannot read input {self.path} after line {splitter.line}: {exc.strerror}"
                + not_converted(splitter.buffered, splitter.line + 1)
            ) from exc
        self.bytes_read += len(data)
        self.last_active = now = time.monotonic()
        if data:
            self.last_data_at = now
            head = self._head
            if head and os.pread(file.fileno(), len(head), 0) != head:
                return None
            if len(head) < FINGERPRINT_BYTES:
                self._head += data[: FINGERPRINT_BYTES - len(head)]
        return data

    def _look_for_change(self, fd: int) -> str | None:
        """At the end of the open file: "rotated", "truncated", or None (wait for more)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None  # deleted or being rotated: keep the old file until a new one appears
        except OSError as exc:
            # A directory of the path became unreadable or was replaced (as `tail -F`: say so,
            # keep the open file, and look again; the path may come back).
            if not self._said_inaccessible:
                self._said_inaccessible = True
                self._log.warning("input_inaccessible", path=str(self.path), error=exc.strerror)
            return None
        if self._said_inaccessible:
            self._said_inaccessible = False
            self._log.info("input_accessible", path=str(self.path))
        if _identity(st) != self._identity:
            return "rotated"
        offset = self._lines.offset + self._lines.buffered
        if st.st_size < offset:
            return "truncated"
        # Truncated and rewritten past our offset between two looks: the size alone cannot
        # tell, but the first bytes (header and first rows) differ from what we read.
        head = self._head[: min(len(self._head), offset)]
        try:
            if head and os.pread(fd, len(head), 0) != head:
                return "truncated"
        except OSError as exc:
            raise InputError(f"cannot read input {self.path}: {exc.strerror}") from exc
        self.size = st.st_size
        return None


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino
