"""What every input source gives the pipeline: chunks of whole lines and a resumable position.

    Source ──Chunk──▶ parse stage
             (lines of one file, its header when a file starts, where reading stands after it)

A source owns reading only: opening, following, rotation, decompression, splitting into lines.
Whether a line is a valid row is the parser's business (core/csv_parser.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from l3tol1.core.mbo import MboMetadata
from l3tol1.core.records import Reject
from l3tol1.errors import InputError

__all__ = [
    "FINGERPRINT_BYTES",
    "Chunk",
    "Position",
    "Source",
    "decode_header",
    "fingerprint",
    "header_too_long",
    "not_converted",
]

# How much of the input's start identifies it: bytes already read, so they never change.
FINGERPRINT_BYTES = 4096


def fingerprint(head: bytes) -> str:
    """The sha256 (hex) of a file's first bytes."""
    import hashlib  # OpenSSL's, slow to import: only a checkpoint needs it

    return hashlib.sha256(head).hexdigest()


def decode_header(raw: bytes, name: str) -> str:
    """The header line of input ``name`` as text.

    :raises InputError: it is not valid UTF-8.
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"input {name}: the header (line 1) is not valid UTF-8") from exc


def header_too_long(name: str, max_line: int) -> InputError:
    """The error of a header line over the line limit."""
    return InputError(f"input {name}: the header (line 1) is longer than {max_line} bytes")


def not_converted(buffered: int, number: int, unit: str = "line") -> str:
    """What a damaged input ends on, for the end of its error: the bytes of the ``unit`` (line,
    DBN record) numbered ``number`` that were read before the damage, and are not converted
    (never applied: what is cut short may still parse, as a wrong row)."""
    if not buffered:
        return ""
    return f"; the {buffered} bytes of {unit} {number} read before it are not converted"


@dataclass(frozen=True, slots=True)
class Position:
    """Where reading stands after a chunk, and what a restart resumes from.

    ``path``, ``dev`` and ``ino`` name the file being read (``ino`` 0: no file yet), ``head`` its
    first bytes as read (to tell a replaced file that reuses the inode); ``offset`` counts the
    bytes consumed through the last whole line (decompressed bytes for a compressed file) and
    ``line`` is that line's number. Offset 0 means nothing of the file was consumed yet.
    """

    path: str
    dev: int = 0
    ino: int = 0
    head: bytes = b""
    offset: int = 0
    line: int = 0

    @property
    def head_length(self) -> int:
        """How many of the file's first bytes the fingerprint covers: never past the offset."""
        return min(len(self.head), self.offset)

    def head_sha256(self) -> str:
        """The fingerprint of the consumed part of ``head``."""
        return fingerprint(self.head[: self.head_length])


@dataclass(slots=True)
class Chunk:
    """Whole lines of one input file (each ending in a newline), numbered from ``first_line``.

    ``header`` is set on the first chunk of each file: the parser for its lines is built from
    it (a CSV header line, or a DBN file's metadata; a DBN chunk holds whole records, numbered
    like lines). ``rejects`` are lines the source itself refused (too long to hold).
    ``position`` is where reading stands after the chunk; ``end_of_input`` says no line can
    follow; ``caught_up`` that the chunk ends where the followed file ends for now (what the
    writer holds can be made durable at once: nothing more is coming to batch it with).

    ``damage``, on the last chunk only (with ``end_of_input``): why the input ends before its
    end — damaged or unreadable data, a followed file replaced by one that cannot be followed.
    Every whole line before it came in the chunks before, so the run converts them as at a
    normal end (issue 17) and then fails with this error; a source never raises mid-run.
    """

    data: bytes
    first_line: int
    position: Position
    header: str | MboMetadata | None = None
    rejects: list[Reject] = field(default_factory=list)
    end_of_input: bool = False
    caught_up: bool = False
    damage: InputError | None = None


class Source(Protocol):
    """An input: a file followed like ``tail -F``, or a stream read to its end."""

    bytes_read: int  # raw bytes read so far (compressed bytes for a compressed file)
    size: int | None  # the input's size when known, for a progress bar
    rotations: int
    truncations: int
    idle: bool  # waiting for the input to appear or grow: nothing to do, and healthy
    last_active: float  # monotonic time of the last read or look
    last_data_at: float  # monotonic time new bytes last arrived

    @property
    def position(self) -> Position:
        """Where reading stands after the last chunk yielded."""
        ...

    async def open(self) -> str | MboMetadata | None:
        """Open the input and read its header line (or DBN metadata), if it has one yet.

        Called before any output is touched, so that a bad input fails first.

        :raises InputError: the input is missing (when not waited for) or unreadable.
        """
        ...

    def chunks(self) -> AsyncIterator[Chunk]:
        """Yield chunks until the input ends (read to its end, or cut short by damage: see
        `Chunk.damage`) or forever (following)."""
        ...

    async def aclose(self) -> None:
        """Release the input; safe to call twice."""
        ...
