"""Inputs read once, to their end: standard input, a named pipe, a compressed file, a
Databento DBN file (SPEC §10, §12).

A daemon thread does the reading (and the decompression, which releases the GIL) and hands the
bytes over a bounded memory stream: the pipeline's await on it is always cancellable, and a read
that blocks forever (a pipe whose writer never writes) cannot hold up shutdown or the exit.
Every byte is read once: the magic bytes that pick the codec and the header line that is checked
before any output is touched are kept and handed on, never read twice.

What the (decompressed) bytes are is told by their start: ``DBN`` is Databento's binary format
(cut into whole records, its metadata as the header), anything else CSV lines. ``input_format``
forces one.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import sys
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.abc import ObjectReceiveStream
from anyio.streams.memory import MemoryObjectSendStream

from l3tol1.core.mbo import MboMetadata
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
from l3tol1.sources.codecs import MAGIC_BYTES, ByteReader, codec_of, decompressing
from l3tol1.sources.dbn import DBN_MAGIC, RecordSplitter, read_metadata
from l3tol1.sources.lines import HeaderTooLong, Lines, LineSplitter, take_header

__all__ = ["STDIN", "StreamSource", "is_stream"]

STDIN = Path("-")
# Other names of standard input: read as a stream even when a file is redirected to it.
_STDIN_NAMES = frozenset({"/dev/stdin", "/dev/fd/0", "/proc/self/fd/0"})
# As a regular file's chunks (sources/file.py): fewer, larger chunks, each a handoff from the
# reading thread and a pass through every stage (a zstd or DBN stream is read this much at once).
_CHUNK_SIZE = 1 << 19
# Chunks between the reading thread and the pipeline: bounds the memory of a fast reader.
_BUFFERED_CHUNKS = 4


def is_stream(path: Path) -> bool:
    """Whether ``path`` is read as a stream (standard input, a pipe, a device, a socket)
    rather than as a regular file that can be followed, sought and checkpointed."""
    if path == STDIN or str(path) in _STDIN_NAMES:
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


class StreamSource:
    """Reads standard input, a pipe or a file to its end, decompressing what is compressed.

    :param resume: (offset, line) to skip to: a compressed file is decompressed again from its
        start and the lines (or DBN records) before the recorded position are dropped unread.
    :param input_format: "csv" or "dbn"; None tells them apart by the first bytes.
    """

    def __init__(
        self,
        path: Path,
        *,
        resume: tuple[int, int] | None = None,
        chunk_size: int = _CHUNK_SIZE,
        max_line: int | None = None,
        input_format: str | None = None,
    ) -> None:
        self.path = path
        self.name = "standard input" if path == STDIN else str(path)
        self.chunk_size = chunk_size
        self.bytes_read = 0
        self.size: int | None = None
        self.rotations = 0
        self.truncations = 0
        self.idle = False
        self.last_active = self.last_data_at = time.monotonic()
        self.codec: str | None = None
        self._resume = resume
        kwargs = {} if max_line is None else {"max_line": max_line}
        self._lines: LineSplitter | RecordSplitter = LineSplitter(**kwargs)
        self.input_format = input_format
        self._start = b""  # the first bytes, held until they tell CSV from DBN
        self._header_pending = True
        self._head = b""
        self._identity = (0, 0)
        self._ready: deque[Chunk] = deque()  # chunks read by `open`, not yet yielded
        self._receive: ObjectReceiveStream[bytes | BaseException] | None = None
        self._send: MemoryObjectSendStream[bytes | BaseException] | None = None  # the thread's
        # The reading thread hands chunks over without waiting on the event loop: a free slot
        # (taken before, given back when the chunk is received) bounds what is in flight, and
        # the loop only ever runs a plain callback for it, never a task that could outlive it.
        self._slots = threading.BoundedSemaphore(_BUFFERED_CHUNKS)
        self._stopped = threading.Event()
        self._ended = False
        self._damage: InputError | None = None  # what ended the input early
        self._log = get_logger()

    @property
    def position(self) -> Position:
        """Where reading stands now (``offset`` counts decompressed bytes). On resume, never
        before the checkpoint's position: the lines skipped on the way there are accounted for
        by the checkpoint's state (a checkpoint cut while skipping must not claim less, or a
        restart from it would apply them again)."""
        path = self.name if self.path == STDIN else os.path.abspath(self.path)
        offset, line = self._lines.offset, self._lines.line
        if self._resume is not None and line < self._resume[1]:
            offset, line = self._resume
        return Position(path, *self._identity, self._head, offset, line)

    async def open(self) -> str | MboMetadata | None:
        """Start reading and wait for the header line (None: the input ended before one).

        :raises InputError: the input cannot be opened or read, or its header is unusable.
        """
        if self.path != STDIN:
            try:
                st = os.stat(self.path)
            except FileNotFoundError as exc:
                raise InputError(f"input file {self.path} does not exist") from exc
            except OSError as exc:
                raise InputError(f"cannot read input {self.path}: {exc.strerror}") from exc
            if stat.S_ISREG(st.st_mode):
                # A regular (compressed) file is whole: its first bytes on disk identify it.
                self._identity = (st.st_dev, st.st_ino)
                self.size = st.st_size
                with _open_input(self.path) as file:
                    self._head = file.read(FINGERPRINT_BYTES)
        send, self._receive = anyio.create_memory_object_stream[bytes | BaseException](
            _BUFFERED_CHUNKS + 1
        )
        self._send = send
        token = anyio.lowlevel.current_token()
        threading.Thread(
            target=self._pump, args=(send, token), name="l3tol1-input", daemon=True
        ).start()
        while self._header_pending and not self._ended:
            chunk = await self._next_chunk()
            if chunk is not None:
                self._ready.append(chunk)
        header = next((c.header for c in self._ready if c.header is not None), None)
        return header

    async def chunks(self) -> AsyncIterator[Chunk]:
        """Yield chunks of whole lines until the end of the input. Damaged data, a read error
        or a DBN stream cut inside a record ends the input there: the last chunk carries the
        error (`Chunk.damage`).

        :raises InputError: the input has no header, cannot be opened, is damaged before
            its header or before the position a checkpoint resumes from.
        """
        if self._receive is None:
            await self.open()
        while True:
            while self._ready:
                yield self._ready.popleft()
            if self._ended:
                break
            chunk = await self._next_chunk()
            if chunk is not None:
                self._ready.append(chunk)
        if self._damage is not None:
            position = self.position
            yield Chunk(b"", position.line + 1, position, end_of_input=True, damage=self._damage)
            return
        if self._header_pending:
            raise InputError(f"input {self.name} is empty: it has no header line")
        if self._resume is not None and self._lines.offset < self._resume[0]:
            raise InputError(
                f"input {self.name} ended at byte {self._lines.offset}, before the position"
                f" {self._resume[0]} the checkpoint records: it is not the same input"
            )
        yield Chunk(b"", self._lines.line + 1, self.position, end_of_input=True)

    async def aclose(self) -> None:
        """Stop reading; safe to call twice. A thread blocked in a read is left to the exit."""
        self._stopped.set()
        if self._send is not None:
            # Closed here, in the loop's thread (where the reading thread's sends run too): a
            # thread that stops early, told to, leaves it open.
            self._send.close()
        if self._receive is not None:
            await self._receive.aclose()

    async def _next_chunk(self) -> Chunk | None:
        """Receive the next bytes from the thread and make a chunk of them (None: nothing to
        yield yet, such as lines skipped on resume)."""
        assert self._receive is not None
        try:
            item = await self._receive.receive()
        except anyio.EndOfStream:
            item = b""
        else:
            self._slots.release()
        if isinstance(item, InputError):
            raise item  # the input could not be opened: nothing was read
        if isinstance(item, BaseException):
            self._end_damaged(self._read_error(item))
            return None
        self.last_active = time.monotonic()
        if item:
            self.last_data_at = self.last_active
        else:
            self._ended = True
        metadata = None
        if self._header_pending and self.input_format != "csv":
            self._start += item
            found = self._dbn_start()
            if found is None:
                return None  # not enough bytes yet to tell
            metadata, item = found
        if item:
            lines = self._lines.feed(item)
        else:
            try:
                lines = self._lines.finish()
            except InputError as exc:  # a DBN stream that ends inside a record
                self._end_damaged(exc)
                return None
        return self._chunk(lines, metadata)

    def _read_error(self, exc: BaseException) -> InputError:
        """The error of a read that failed, or of damaged compressed data: where it is, and
        what was read of the line (or record) it cuts."""
        splitter = self._lines
        unit = "record" if isinstance(splitter, RecordSplitter) else "line"
        where = f"after {unit} {splitter.line}" if splitter.line else "at its start"
        if isinstance(exc, OSError) and exc.strerror:
            text = f"cannot read input {self.name} {where}: {exc.strerror}"
        else:
            what = f"{self.codec} data" if self.codec else "data"
            text = f"cannot read input {self.name}: damaged {what} {where} ({exc})"
        return InputError(text + not_converted(splitter.buffered, splitter.line + 1, unit))

    def _end_damaged(self, error: InputError) -> None:
        """End the input at damage: what was read before it is converted, then the run fails
        (issue 17). Damage before the header, or before the position a checkpoint resumes
        from, leaves nothing to convert: it is raised at once.

        :raises InputError: ``error``, when nothing is to be converted.
        """
        self._ended = True
        if self._header_pending:
            raise error
        if self._resume is not None and self._lines.offset < self._resume[0]:
            raise error
        self._damage = error

    def _dbn_start(self) -> tuple[MboMetadata | None, bytes] | None:
        """From the first bytes: (DBN metadata, the bytes after it) for a DBN stream, (None,
        the bytes) for CSV, or None while the bytes held cannot tell yet."""
        start = self._start
        if self.input_format is None and not start.startswith(DBN_MAGIC[: len(start)]):
            self.input_format = "csv"  # cannot be DBN: lines from here on
        elif self.input_format is None and len(start) >= len(DBN_MAGIC):
            self.input_format = "dbn"
        elif self.input_format is None and not self._ended:
            return None
        if self.input_format != "dbn":
            self._start = b""
            return None, start
        found = read_metadata(start, self.name)
        if found is None:
            if self._ended:
                raise InputError(f"input {self.name} ends inside its DBN metadata")
            return None
        metadata, length = found
        self._start = b""
        self._lines = RecordSplitter(metadata.record_size, length, self.name)
        return metadata, start[length:]

    def _chunk(self, lines: Lines, metadata: MboMetadata | None) -> Chunk | None:
        header: str | MboMetadata | None = metadata
        if metadata is not None:
            self._header_pending = False
        elif self._header_pending:
            try:
                raw, lines = take_header(lines)
            except HeaderTooLong:
                raise header_too_long(self.name, LineSplitter().max_line) from None
            if raw is not None:
                header = decode_header(raw, self.name)
                self._header_pending = False
        if self._resume is not None:
            lines = self._lines.skip_through(lines, self._resume[1])
        if not (lines.data or lines.rejects or header):
            return None
        return Chunk(lines.data, lines.first_line, self.position, header, lines.rejects)

    # -- the reading thread ----------------------------------------------------------------

    def _pump(self, send: MemoryObjectSendStream[bytes | BaseException], token: object) -> None:
        """Read the input to its end and send the (decompressed) bytes; b"" marks the end."""

        def deliver(item: bytes | BaseException) -> bool:
            while not self._slots.acquire(timeout=0.1):
                if self._stopped.is_set():
                    return False
            if self._stopped.is_set():
                return False
            try:
                anyio.from_thread.run_sync(send.send_nowait, item, token=token)  # type: ignore[arg-type]
            except Exception:  # the pipeline stopped listening: stop reading
                return False
            return True

        try:
            with self._open_raw() as raw:
                head = b""
                while len(head) < MAGIC_BYTES:
                    more = raw.read(MAGIC_BYTES - len(head))
                    if not more:
                        break
                    head += more
                self.codec = codec_of(head)
                buffered = io.BufferedReader(_Prefixed(head, raw, self))
                reader: ByteReader = buffered
                if self.codec is not None:
                    reader = decompressing(buffered, self.codec)
                while True:
                    # read1: what one read brings (a pipe's writer may pause), not a full chunk
                    data = reader.read1(self.chunk_size)
                    if not deliver(data) or not data:
                        return
        except Exception as exc:  # cannot open (InputError), a read error, damaged data
            deliver(exc)
        finally:
            with contextlib.suppress(Exception):  # the event loop may be gone already
                if not self._stopped.is_set():
                    anyio.from_thread.run_sync(send.close, token=token)  # type: ignore[arg-type]

    def _open_raw(self) -> BinaryIO:
        if self.path == STDIN:
            return os.fdopen(os.dup(sys.stdin.fileno()), "rb", buffering=0)
        return _open_input(self.path)


class _Prefixed(io.RawIOBase):
    """Raw bytes that start with ``prefix`` (already read) and go on with ``raw``; counts the
    raw bytes read into ``source.bytes_read``."""

    def __init__(self, prefix: bytes, raw: BinaryIO, source: StreamSource) -> None:
        self._prefix = prefix
        self._raw = raw
        self._source = source
        source.bytes_read += len(prefix)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._prefix:
            n = min(len(buffer), len(self._prefix))
            buffer[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        n = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        self._source.bytes_read += n or 0
        return n or 0


def _open_input(path: Path) -> BinaryIO:
    """``path`` opened for unbuffered binary reads (blocking for a pipe with no writer yet).

    :raises InputError: it cannot be opened.
    """
    try:
        return open(path, "rb", buffering=0)
    except IsADirectoryError as exc:
        raise InputError(f"input {path} is a directory, not a file") from exc
    except OSError as exc:
        raise InputError(f"cannot open input {path}: {exc.strerror}") from exc
