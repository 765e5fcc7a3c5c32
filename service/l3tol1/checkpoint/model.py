"""What a checkpoint holds (SPEC §8): one typed object, each piece taken at the same point of the
stream and owned by the part of the run it comes from.

- ``options``: the options that decide the output; a restart with others is refused;
- ``input``: the file being read (path, device, inode, a sha256 of its first bytes, so that inode
  reuse or a replaced file is detected), the byte offset to resume from and that line's number;
- ``feed``: what the resequencer holds, waiting events included (at most --max-pending);
- ``instruments``: every book's live orders, last quote and the counters (None for `l3tol1
  publish`, which keeps no books); with a schema of rows, also each instrument's previous
  row's levels, its marks and its pending sample (core/schemas.py);
- ``output`` / ``rejects``: each file's identity and size at the cut, and its counts (no
  ``output`` for `l3tol1 publish`, which writes no rows);
- ``names``: how Databento's books are named (publishers, books met and kept, in-band symbol
  mappings, each book's name on each day), as of the cut's position.

Each piece turns itself into plain data and back (``to_plain``, ``from_plain``, beside its class);
codec.py puts them together on disk, store.py keeps the file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from l3tol1.core.feed import FeedState
from l3tol1.core.instruments import InstrumentsState
from l3tol1.core.naming import NamerState
from l3tol1.core.plain import PlainReader
from l3tol1.core.schemas import DepthsState
from l3tol1.sinks.base import OutputState
from l3tol1.sinks.rejects import RejectsState
from l3tol1.sources.base import Position

__all__ = ["Checkpoint", "InputRecord", "RunOptions"]


@dataclass(frozen=True, slots=True)
class RunOptions:
    """The options that decide which rows are written: a restart must use the same ones."""

    start_seq: int | None
    max_pending: int
    gap_timeout: float | None  # only when following: without --follow the clock plays no part
    instrument_column: str | None = None
    instruments: tuple[str, ...] | None = None
    output_format: str | None = "csv"  # None: no L1 output (`l3tol1 publish`)
    schema: str = "l1"  # the rows written (SPEC §14)

    def differences(self, other: RunOptions) -> list[str]:
        """The options (as flags) whose value differs in ``other``."""
        changed = []
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if f.name == "gap_timeout" and (mine is None or theirs is None):
                continue  # a run that does not follow has no clock to disagree with
            if mine != theirs:
                changed.append("--" + f.name.replace("_", "-"))
        return changed

    def to_plain(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_plain(cls, obj: Any, where: str, read: PlainReader) -> RunOptions:
        """The options `to_plain` gave, checked.

        :raises PlainDataError: a value is missing or of the wrong type.
        """
        gap = read.get(obj, "gap_timeout", where)
        if gap is not None and not (isinstance(gap, int | float) and math.isfinite(gap)):
            read.fail(f"{where}.gap_timeout", "not a number")
        instruments = read.get(obj, "instruments", where)
        if instruments is not None and not (
            isinstance(instruments, list) and all(isinstance(i, str) for i in instruments)
        ):
            read.fail(f"{where}.instruments", "not a list of names")
        return cls(
            start_seq=read.integer(obj, "start_seq", where, null=True),
            max_pending=read.integer(obj, "max_pending", where),
            gap_timeout=gap,
            instrument_column=read.string(obj, "instrument_column", where, null=True),
            instruments=None if instruments is None else tuple(instruments),
            output_format=read.string(obj, "output_format", where, null=True),
            # absent from the checkpoints of versions before the schemas: their rows were l1
            schema=read.string(obj, "schema", where) if "schema" in obj else "l1",
        )


@dataclass(frozen=True, slots=True)
class InputRecord:
    """The input at a checkpoint: which file, how much of it was consumed."""

    path: str
    dev: int
    ino: int  # 0: no file was open yet
    head_length: int
    head_sha256: str
    offset: int
    line: int

    @classmethod
    def at(cls, position: Position) -> InputRecord:
        """The record of a source's position."""
        return cls(
            position.path,
            position.dev,
            position.ino,
            position.head_length,
            position.head_sha256(),
            position.offset,
            position.line,
        )

    def to_plain(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_plain(cls, obj: Any, where: str, read: PlainReader) -> InputRecord:
        """The record `to_plain` gave, checked.

        :raises PlainDataError: a value is missing or of the wrong type.
        """
        return cls(
            path=read.string(obj, "path", where),
            dev=read.integer(obj, "dev", where),
            ino=read.integer(obj, "ino", where),
            head_length=read.integer(obj, "head_length", where, hi=1 << 20),
            head_sha256=read.string(obj, "head_sha256", where),
            offset=read.integer(obj, "offset", where),
            line=read.integer(obj, "line", where),
        )


@dataclass(slots=True)
class Checkpoint:
    """Everything a restart needs, taken at one point of the stream."""

    options: RunOptions
    input: InputRecord
    feed: FeedState
    # the books: an l1 run's, or a schema's with order counts and marks (SPEC §14); None: no
    # books (`l3tol1 publish`)
    instruments: InstrumentsState | DepthsState | None
    output: OutputState | None  # None: no L1 output (`l3tol1 publish`)
    rejects: RejectsState
    names: NamerState = field(default_factory=NamerState)
