"""Crash-safe resume state (SPEC §8): what a checkpoint holds, how it is written, read and checked.

A `Checkpoint` is one typed, versioned object to which each part of the pipeline contributes its
own piece, all taken at the same point of the stream:

- ``options``: the options that decide the output; a restart with others is refused;
- ``input``: the file being read (path, device, inode, a sha256 of its first bytes, so that inode
  reuse or a replaced file is detected), the byte offset to resume from and that line's number;
- ``feed``: what the resequencer holds, waiting events included (at most --max-pending);
- ``instruments``: every book's live orders, last quote and the counters;
- ``output`` / ``rejects``: each file's identity and size at the cut, and its counts;
- ``names``: how Databento's books are named (publishers, books met and kept, in-band symbol
  mappings, each book's name on each day), as of the cut's position.

On disk it is JSON compressed with zstd: waiting events and orders are stored column by column,
so a checkpoint is small and loads without a burst of memory. It is written only after the rows
it accounts for are fsynced, atomically (temp file, fsync, rename, fsync of the directory), and
validated whole on load (schema, types, invariants): a damaged checkpoint is one clear line, exit
2, never a traceback or a wrong resume. Every value the cores can hold is accepted back (a
Databento price is any int64). Earlier formats are refused with a line that says so: finish that
run with the version that started it, or remove the checkpoint. Format 1 was plain JSON (l3tol1
0.1); format 2 had no in-band symbol mappings nor day names in ``names`` (issue 17).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from l3tol1.core.feed import FeedState
from l3tol1.core.instruments import InstrumentsState, InstrumentState
from l3tol1.core.mbo import MAX_TS, NamerState
from l3tol1.core.numbers import MAX_PRICE, MAX_QTY, MAX_SEQ
from l3tol1.core.records import Action, Event, Side
from l3tol1.errors import CheckpointError, OutputError
from l3tol1.sinks.csv import CsvState
from l3tol1.sinks.files import FileRecord, take_lock
from l3tol1.sinks.parquet import ParquetState
from l3tol1.sinks.rejects import RejectsState
from l3tol1.sources.base import Position, fingerprint

__all__ = [
    "VERSION",
    "Checkpoint",
    "CheckpointStore",
    "InputRecord",
    "RunOptions",
    "decode",
    "encode",
    "find_input",
]

VERSION = 3
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# A checkpoint never legitimately decompresses to more than this (waiting events are bounded by
# --max-pending, books by memory): a bigger one is damage, refused before it fills the memory.
_MAX_JSON_BYTES = 4 << 30
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RunOptions:
    """The options that decide which rows are written: a restart must use the same ones."""

    start_seq: int | None
    max_pending: int
    gap_timeout: float | None  # only when following: without --follow the clock plays no part
    instrument_column: str | None = None
    instruments: tuple[str, ...] | None = None
    output_format: str = "csv"

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


@dataclass(slots=True)
class Checkpoint:
    """Everything a restart needs, taken at one point of the stream."""

    options: RunOptions
    input: InputRecord
    feed: FeedState
    instruments: InstrumentsState
    output: CsvState | ParquetState
    rejects: RejectsState
    names: NamerState = field(default_factory=NamerState)


# -- encoding ------------------------------------------------------------------------------------


def encode(checkpoint: Checkpoint) -> bytes:
    """The checkpoint as bytes on disk (zstd-compressed JSON)."""
    import zstandard

    feed = checkpoint.feed
    state = {
        "version": VERSION,
        "options": asdict(checkpoint.options),
        "input": asdict(checkpoint.input),
        "feed": {
            "next_seq": feed.next_seq,
            "first_seq": feed.first_seq,
            "gaps": feed.gaps,
            "pending": _columns(feed.pending, _EVENT_COLUMNS),
            "counters": {name: getattr(feed, name) for name in _FEED_COUNTERS},
        },
        "instruments": instruments_json(checkpoint.instruments),
        "output": _output(checkpoint.output),
        "rejects": asdict(checkpoint.rejects),
        "names": asdict(checkpoint.names),
    }
    text = json.dumps(state, separators=(",", ":"), ensure_ascii=False)
    return zstandard.ZstdCompressor(level=3).compress(text.encode())


def instruments_json(state: InstrumentsState) -> dict[str, Any]:
    """The books' piece as JSON-ready data (also a worker's state on JetStream, SPEC §13)."""
    return {
        "books": [
            {"name": i.name, "last": i.last, "orders": _columns(i.orders, _ORDER_COLUMNS)}
            for i in state.instruments
        ],
        "anomalies": state.anomalies,
        "counters": {name: getattr(state, name) for name in _INSTRUMENT_COUNTERS},
        "last_seq": state.last_seq,
    }


def instruments_from_json(data: Any, where: str) -> InstrumentsState:
    """The books' piece from `instruments_json`'s data, checked whole.

    :raises CheckpointError: damage, naming ``where`` it was read from.
    """
    return _Checker(Path(where)).instruments({"instruments": data})


def output_json(state: CsvState | ParquetState) -> dict[str, Any]:
    """The output's piece as JSON-ready data (also `l3tol1 collect`'s checkpoint, SPEC §13)."""
    return _output(state)


def output_from_json(data: Any, path: Path) -> CsvState | ParquetState:
    """The output's piece from `output_json`'s data, checked whole.

    :raises CheckpointError: damage, naming the checkpoint ``path``.
    """
    return _Checker(path).output({"output": data})


def _output(state: CsvState | ParquetState) -> dict[str, Any]:
    if isinstance(state, ParquetState):
        return {"kind": "parquet", **asdict(state)}
    return {"kind": "csv", **asdict(state)}


_EVENT_COLUMNS = Event._fields
_ORDER_COLUMNS = ("side", "order_id", "price", "qty")
_FEED_COUNTERS = ("received", "late", "duplicate", "gaps_skipped", "seqs_lost")
_INSTRUMENT_COUNTERS = ("applied", "skipped", "crossed", "locked")


def _columns(rows: list[Any], names: tuple[str, ...]) -> dict[str, list[Any]]:
    """Rows of equal length as one list per column: compact, and cheap to load."""
    columns: dict[str, list[Any]] = {name: [] for name in names}
    lists = [columns[name] for name in names]
    for row in rows:
        for column, value in zip(lists, row, strict=True):
            column.append(value)
    return columns


# -- decoding and validation ---------------------------------------------------------------------


def decode(data: bytes, path: Path) -> Checkpoint:
    """The checkpoint stored as ``data`` in file ``path``, checked whole.

    :raises CheckpointError: in one sentence, for another format or version, or any damage:
        bytes that do not decode, a missing key, a wrong type, a broken invariant.
    """
    if data[:1] == b"{":
        version = None
        with contextlib.suppress(ValueError):
            version = json.loads(data).get("version")
        if version == 1:
            raise CheckpointError(
                f"checkpoint {path} was written by l3tol1 0.1 (format 1), which this version"
                " does not read: finish that run with l3tol1 0.1, or remove the checkpoint to"
                " start over"
            )
        raise CheckpointError(f"checkpoint {path} is not an l3tol1 checkpoint")
    if not data.startswith(_ZSTD_MAGIC):
        raise CheckpointError(f"checkpoint {path} is not an l3tol1 checkpoint")
    import zstandard

    try:
        reader = zstandard.ZstdDecompressor().stream_reader(data)
        text = reader.read(_MAX_JSON_BYTES + 1)
        state = json.loads(text) if len(text) <= _MAX_JSON_BYTES else None
    except (zstandard.ZstdError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is damaged: {exc}") from exc
    check = _Checker(path)
    if isinstance(state, dict) and state.get("version") == 2:
        raise CheckpointError(
            f"checkpoint {path} was written by an earlier l3tol1 (format 2), which this version"
            " does not read: finish that run with the version that started it, or remove the"
            " checkpoint to start over"
        )
    if not isinstance(state, dict) or state.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path} is not a format-{VERSION} l3tol1 checkpoint")
    checkpoint = Checkpoint(
        options=check.options(state),
        input=check.input(state),
        feed=check.feed(state),
        instruments=check.instruments(state),
        output=check.output(state),
        rejects=check.rejects(state),
        names=check.names(state),
    )
    problem = checkpoint.feed.check()
    if problem is not None:
        check.fail("feed", problem)
    return checkpoint


class _Checker:
    """Reads each piece of a decoded checkpoint, checking every type and bound on the way."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, problem: str) -> None:
        raise CheckpointError(
            f"checkpoint {self.path} is damaged ({where}: {problem}); remove it to start over"
        )

    def get(self, obj: Any, key: str, where: str) -> Any:
        if not isinstance(obj, dict):
            self.fail(where, "not an object")
        if key not in obj:
            self.fail(f"{where}.{key}", "missing")
        return obj[key]

    def integer(
        self, obj: Any, key: str, where: str, lo: int = 0, hi: int = MAX_SEQ, *, null: bool = False
    ) -> Any:
        value = self.get(obj, key, where)
        if value is None and null:
            return None
        if type(value) is not int or not lo <= value <= hi:
            self.fail(f"{where}.{key}", f"not an integer in {lo}..{hi}")
        return value

    def string(self, obj: Any, key: str, where: str, *, null: bool = False) -> Any:
        value = self.get(obj, key, where)
        if value is None and null:
            return None
        if not isinstance(value, str):
            self.fail(f"{where}.{key}", "not a string")
        return value

    def items(self, obj: Any, key: str, where: str, item: Callable[[Any], bool]) -> list[Any]:
        value = self.get(obj, key, where)
        if not isinstance(value, list) or not all(item(v) for v in value):
            self.fail(f"{where}.{key}", "not a list of the expected values")
        return list(value)

    def counts(self, obj: Any, key: str, where: str) -> dict[str, int]:
        value = self.get(obj, key, where)
        if not isinstance(value, dict) or not all(_natural(v) for v in value.values()):
            self.fail(f"{where}.{key}", "not a map of counts")
        return dict(value)

    def options(self, state: Any) -> RunOptions:
        where = "options"
        options = self.get(state, "options", "")
        gap = self.get(options, "gap_timeout", where)
        if gap is not None and not (isinstance(gap, int | float) and math.isfinite(gap)):
            self.fail(f"{where}.gap_timeout", "not a number")
        instruments = self.get(options, "instruments", where)
        if instruments is not None and not (
            isinstance(instruments, list) and all(isinstance(i, str) for i in instruments)
        ):
            self.fail(f"{where}.instruments", "not a list of names")
        return RunOptions(
            start_seq=self.integer(options, "start_seq", where, null=True),
            max_pending=self.integer(options, "max_pending", where),
            gap_timeout=gap,
            instrument_column=self.string(options, "instrument_column", where, null=True),
            instruments=None if instruments is None else tuple(instruments),
            output_format=self.string(options, "output_format", where),
        )

    def input(self, state: Any) -> InputRecord:
        where = "input"
        record = self.get(state, "input", "")
        return InputRecord(
            path=self.string(record, "path", where),
            dev=self.integer(record, "dev", where),
            ino=self.integer(record, "ino", where),
            head_length=self.integer(record, "head_length", where, hi=1 << 20),
            head_sha256=self.string(record, "head_sha256", where),
            offset=self.integer(record, "offset", where),
            line=self.integer(record, "line", where),
        )

    def feed(self, state: Any) -> FeedState:
        where = "feed"
        feed = self.get(state, "feed", "")
        gaps = self.items(
            feed,
            "gaps",
            where,
            lambda g: isinstance(g, list) and len(g) == 2 and all(_natural(x) for x in g),
        )
        counters = self.get(feed, "counters", where)
        return FeedState(
            # 2^64 once seq 2^64 - 1 was passed: every seq is behind then
            next_seq=self.integer(feed, "next_seq", where, hi=MAX_SEQ + 1, null=True),
            first_seq=self.integer(feed, "first_seq", where, null=True),
            gaps=[(g[0], g[1]) for g in gaps],
            pending=self.events(self.get(feed, "pending", where), f"{where}.pending"),
            **{name: self.integer(counters, name, f"{where}.counters") for name in _FEED_COUNTERS},
        )

    def events(self, columns: Any, where: str) -> list[Event]:
        seq, action, instrument, order_id, side, price, qty, time, line, raw, last = (
            self.column(columns, name, where, check)
            for name, check in (
                ("seq", lambda v: _natural(v) and v <= MAX_SEQ),
                ("action", lambda v: type(v) is int and v in _ACTIONS),
                ("instrument", lambda v: isinstance(v, str)),
                ("order_id", lambda v: isinstance(v, str)),
                ("side", lambda v: type(v) is int and v in _SIDES),
                ("price", _int64),
                ("qty", lambda v: _natural(v) and v <= MAX_QTY),
                ("time", lambda v: isinstance(v, str) or (_natural(v) and v <= MAX_TS)),
                ("line", _natural),
                ("raw", lambda v: isinstance(v, str)),
                ("last", lambda v: isinstance(v, bool)),
            )
        )
        if len({len(c) for c in (seq, action, instrument, order_id, side, price, qty)}) > 1 or (
            len({len(c) for c in (seq, time, line, raw, last)}) > 1
        ):
            self.fail(where, "columns of different lengths")
        return [
            Event(*row)
            for row in zip(
                seq,
                action,
                instrument,
                order_id,
                side,
                price,
                qty,
                time,
                line,
                raw,
                last,
                strict=True,
            )
        ]

    def column(
        self, columns: Any, name: str, where: str, check: Callable[[Any], bool]
    ) -> list[Any]:
        return self.items(columns, name, where, check)

    def instruments(self, state: Any) -> InstrumentsState:
        where = "instruments"
        part = self.get(state, "instruments", "")
        books = self.get(part, "books", where)
        if not isinstance(books, list):
            self.fail(f"{where}.books", "not a list")
        counters = self.get(part, "counters", where)
        return InstrumentsState(
            instruments=[self.book(b, f"{where}.books[{i}]") for i, b in enumerate(books)],
            anomalies=self.counts(part, "anomalies", where),
            last_seq=self.integer(part, "last_seq", where, null=True),
            **{
                name: self.integer(counters, name, f"{where}.counters")
                for name in _INSTRUMENT_COUNTERS
            },
        )

    def book(self, book: Any, where: str) -> InstrumentState:
        name = self.string(book, "name", where)
        last = self.get(book, "last", where)
        if last is not None and not (
            isinstance(last, list)
            and len(last) == 4
            and _int64(last[0])
            and _int64(last[1])
            and all(_natural(v) for v in last[2:])
        ):
            self.fail(f"{where}.last", "not a quote")
        columns = self.get(book, "orders", where)
        side, order_id, price, qty = (
            self.column(columns, column, f"{where}.orders", check)
            for column, check in (
                ("side", lambda v: type(v) is int and v in _SIDES),
                ("order_id", lambda v: isinstance(v, str)),
                ("price", _int64),
                ("qty", lambda v: _natural(v) and 0 < v <= MAX_QTY),
            )
        )
        if not len(side) == len(order_id) == len(price) == len(qty):
            self.fail(f"{where}.orders", "columns of different lengths")
        orders = list(zip(side, order_id, price, qty, strict=True))
        if len({(s, o) for s, o, _, _ in orders}) != len(orders):
            self.fail(f"{where}.orders", "an order appears twice")
        return InstrumentState(name, orders, None if last is None else (*last,))

    def names(self, state: Any) -> NamerState:
        where = "names"
        names = self.get(state, "names", "")

        def is_key(value: Any) -> bool:
            match = _BOOK_KEY.fullmatch(value) if isinstance(value, str) else None
            return (
                match is not None and int(match[1]) <= _MAX_PUBLISHER and int(match[2]) <= _MAX_ID
            )

        def is_mapping(value: Any) -> bool:
            return (
                isinstance(value, list)
                and len(value) == 2
                and _natural(value[0])
                and value[0] <= _MAX_ID
                and isinstance(value[1], str)
                and value[1] != ""
            )

        def is_name(value: Any) -> bool:
            return (
                isinstance(value, list)
                and len(value) == 3
                and is_key(value[0])
                and _natural(value[1])
                and value[1] <= _MAX_DAY
                and isinstance(value[2], str)
            )

        return NamerState(
            first_publisher=self.integer(
                names, "first_publisher", where, hi=_MAX_PUBLISHER, null=True
            ),
            seen=self.items(names, "seen", where, is_key),
            kept=self.items(names, "kept", where, is_key),
            mappings=[(i, s) for i, s in self.items(names, "mappings", where, is_mapping)],
            names=[(k, d, n) for k, d, n in self.items(names, "names", where, is_name)],
            matched=self.items(names, "matched", where, lambda value: isinstance(value, str)),
        )

    def file(self, obj: Any, where: str) -> FileRecord:
        record = self.get(obj, "file", where)
        where += ".file"
        return FileRecord(
            path=self.string(record, "path", where),
            dev=self.integer(record, "dev", where),
            ino=self.integer(record, "ino", where),
            size=self.integer(record, "size", where),
        )

    def output(self, state: Any) -> CsvState | ParquetState:
        where = "output"
        output = self.get(state, "output", "")
        kind = self.get(output, "kind", where)
        instrument = self.get(output, "instrument", where)
        if instrument not in (None, True, False):
            self.fail(f"{where}.instrument", "not a boolean")
        if kind == "csv":
            return CsvState(
                self.file(output, where), self.integer(output, "rows", where), instrument
            )
        if kind != "parquet":
            self.fail(f"{where}.kind", "neither csv nor parquet")
        nanoseconds = self.get(output, "nanoseconds", where)
        if nanoseconds not in (None, True, False):
            self.fail(f"{where}.nanoseconds", "not a boolean")
        parts = self.items(
            output,
            "parts",
            where,
            lambda p: (
                isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) and _natural(p[1])
            ),
        )
        names = [name for name, _ in parts]
        if names != [f"part-{i:06d}.parquet" for i in range(len(names))]:
            self.fail(f"{where}.parts", "not the parts part-000000... in order")
        return ParquetState(
            path=self.string(output, "path", where),
            dev=self.integer(output, "dev", where),
            ino=self.integer(output, "ino", where),
            parts=tuple((name, rows) for name, rows in parts),
            instrument=instrument,
            nanoseconds=nanoseconds,
        )

    def rejects(self, state: Any) -> RejectsState:
        rejects = self.get(state, "rejects", "")
        return RejectsState(
            self.file(rejects, "rejects"), self.counts(rejects, "by_reason", "rejects")
        )


_ACTIONS = frozenset(int(a) for a in Action)
_SIDES = frozenset(int(s) for s in Side)
# A Databento book's key (publisher_id:instrument_id, a u16 and a u32) and its days (ts_recv is
# at most 2^63 - 1 ns).
_BOOK_KEY = re.compile(r"([0-9]{1,5}):([0-9]{1,10})")
_MAX_PUBLISHER = 2**16 - 1
_MAX_ID = 2**32 - 1
_MAX_DAY = MAX_TS // (86_400 * 10**9)


def _natural(value: Any) -> bool:
    return type(value) is int and value >= 0


def _int64(value: Any) -> bool:
    """A price as the cores hold it: any int64 (Databento's may be negative, SPEC §12)."""
    return type(value) is int and -(2**63) <= value <= MAX_PRICE


# -- finding the input again ---------------------------------------------------------------------


def find_input(record: InputRecord, path: Path, checkpoint: Path) -> tuple[Path, int, int] | None:
    """Where to resume reading: the recorded file (by inode and first bytes: ``path`` itself,
    or a name rotation gave it), its offset and line; None to start ``path`` from its start,
    when nothing of the recorded file had been consumed.

    :raises CheckpointError: the checkpoint names another input path, or a file that was
        replaced while l3tol1 was stopped.
    """
    if os.path.abspath(path) != record.path:
        raise CheckpointError(f"checkpoint {checkpoint} belongs to input {record.path}, not {path}")
    if record.ino == 0:
        return None  # no file was open yet: nothing of any file was consumed
    candidates = [path]
    with contextlib.suppress(OSError):  # an unreadable directory: only `path` is a candidate
        candidates += sorted(p for p in path.parent.iterdir() if p.name != path.name)
    for candidate in candidates:
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (record.dev, record.ino) and _head_matches(candidate, record):
            return candidate, record.offset, record.line
    if record.offset == 0:
        return None  # the recorded file is gone, but nothing of it had been consumed
    raise CheckpointError(
        f"checkpoint {checkpoint} belongs to input {record.path} (inode {record.ino}),"
        f" which was replaced while l3tol1 was stopped; remove the checkpoint to start over"
    )


def _head_matches(path: Path, record: InputRecord) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(record.head_length)
    except OSError:
        return False
    return len(head) == record.head_length and fingerprint(head) == record.head_sha256


# -- the file ------------------------------------------------------------------------------------


class CheckpointStore:
    """Reads and atomically replaces one checkpoint file; holds ``<path>.lock`` while in use,
    so that two runs never share a checkpoint."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._temp = path.with_name(path.name + ".tmp")
        self._lock_path = path.with_name(path.name + ".lock")
        self._lock_fd = -1
        self.saves = 0
        self.last_size = 0  # bytes of the last checkpoint written
        self.last_seconds = 0.0  # how long encoding and writing it took

    def lock(self) -> None:
        """Create and lock ``<path>.lock``: proves the directory is writable, and keeps a
        second run off this checkpoint.

        :raises CheckpointError: the directory is missing or not writable, or the lock is held.
        """
        try:
            fd = os.open(self._lock_path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise CheckpointError(
                f"cannot use checkpoint {self.path}: {exc.strerror} ({self._lock_path})"
            ) from exc
        self._lock_fd = fd
        take_lock(fd, self.path, "checkpoint")

    def unlock(self) -> None:
        """Release the lock; safe to call twice."""
        if self._lock_fd >= 0:
            fd, self._lock_fd = self._lock_fd, -1
            os.close(fd)

    def load(self) -> tuple[Checkpoint | None, bool]:
        """The stored checkpoint (None if there is none) and whether a stale temp was removed.

        :raises CheckpointError: the file is unreadable, of another format, or damaged.
        """
        removed_temp = False
        if self._temp.exists():
            # A crash while writing leaves the temp file; the previous checkpoint still stands.
            self._temp.unlink()
            removed_temp = True
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None, removed_temp
        except IsADirectoryError:
            raise CheckpointError(f"checkpoint {self.path} is a directory") from None
        except OSError as exc:
            raise CheckpointError(f"cannot read checkpoint {self.path}: {exc.strerror}") from exc
        return decode(data, self.path), removed_temp

    def save(self, checkpoint: Checkpoint) -> None:
        """Replace the checkpoint atomically and durably (blocking: run it in a thread).

        :raises OutputError: the checkpoint could not be written (exit 1, like any write).
        """
        started = time.perf_counter()
        data = encode(checkpoint)
        try:
            fd = os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(self._temp, self.path)
            dir_fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise OutputError(f"cannot write checkpoint {self.path}: {exc.strerror}") from exc
        self.saves += 1
        self.last_size = len(data)
        self.last_seconds = time.perf_counter() - started
