"""Databento MBO records to events: SPEC §12, for DBN records and for Databento's CSV export.

One venue event may take several records; only the last carries ``F_LAST`` (0x80), and the write
rule runs only after it (`Event.last`). Records are applied in file order: no resequencing.

- actions: ``A`` add, ``M`` modify (the order now has this price and size, as UPDATE), ``C``
  cancel (subtract ``size``; at zero or below the order goes), ``R`` clear (the book empties),
  ``T`` trade, ``F`` fill and ``N`` none change nothing;
- sides: ``B`` is BUY and ``A`` SELL; ``N`` is refused on A, M and C (`bad side`);
- prices are integers in 1e-9, as held everywhere (an add or modify without one is `bad price`);
- the time is ``ts_recv`` in nanoseconds since the epoch, 0 to 2^63 - 1 (`bad time` beyond: 2^64
  - 1 is Databento's undefined timestamp); ``seq_num`` is ``sequence``.

A DBN stream holds other records besides MBO ones, each with its own length (a live recording
starts with symbol-mapping records and carries system and error records): `MboParser` walks
them by their length, learns names from the symbol mappings, passes every other type over, and
counts them all by type.

Books are kept per (publisher_id, instrument_id): an event's ``instrument`` is that key
(``1:5482``). The name of a book's rows on a day is fixed when the first record of that book on
that day is parsed, from what is known at that point of the file: the symbol the metadata maps
the instrument_id to on that day, else the CSV's ``symbol`` column, else the latest in-band
symbol mapping, else the instrument_id. `MboNamer.name_quotes` only looks the names up, so a
row's name depends on its place in the file, never on how far apart the stages run. Two
publishers never share a book, nor a name: the rows of every publisher but the first one met
get ``@<publisher_id>`` after the name (``ESH1@2``).
"""

from __future__ import annotations

import csv
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from l3tol1.core.numbers import MAX_TIME_NS
from l3tol1.core.plain import PlainReader, natural
from l3tol1.core.records import Action, Event, Reason, Reject, Side

__all__ = [
    "ERRORS_KEPT",
    "F_LAST",
    "HEADER_SIZE",
    "MAX_TS",
    "MBO_COLUMNS",
    "RTYPE_ERROR",
    "RTYPE_MBO",
    "RTYPE_SYMBOL_MAPPING",
    "UNDEF_PRICE",
    "MboCsvParser",
    "MboMetadata",
    "MboNamer",
    "MboParser",
    "NamerState",
    "describe_record",
    "error_text",
    "is_mbo_header",
    "record_type_name",
    "symbol_mapping",
]

F_LAST = 0x80
UNDEF_PRICE = 2**63 - 1
MAX_TS = MAX_TIME_NS  # the last ts_recv held
NS_PER_DAY = 86_400 * 10**9
HEADER_SIZE = 16  # every DBN record starts with length (in 4-byte words), rtype, ids, ts_event
RTYPE_MBO = 0xA0
RTYPE_SYMBOL_MAPPING = 0x16
RTYPE_SYSTEM = 0x17
RTYPE_ERROR = 0x15
_TYPE_NAMES = {
    RTYPE_MBO: "mbo",
    RTYPE_SYMBOL_MAPPING: "symbol_mapping",
    RTYPE_SYSTEM: "system",
    RTYPE_ERROR: "error",
}
# The gateway's error records kept for the log, per file; the rest are only counted.
ERRORS_KEPT = 10
# Symbol-mapping records, without ts_out: (size, where stype_out_symbol is, its size). DBN v1's
# symbols are 22 bytes (stype_in_symbol, stype_out_symbol, 4 bytes, start_ts, end_ts); v2 and v3
# have stype_in, a 71-byte stype_in_symbol, stype_out, a 71-byte stype_out_symbol, the times.
_MAPPING_LAYOUTS = {80: (38, 22), 176: (89, 71)}
# Error records, without ts_out: their text (v1: 64 bytes; v2 and v3: 302, then code, is_last).
_ERROR_TEXT = {80: 64, 320: 302}
# Every unsigned integer column of the CSV export that is read, and its largest value (the DBN
# field's type: u16 publisher, u32 instrument, u64 order id, u8 flags, u32 sequence).
_CSV_LIMITS = {
    "publisher_id": 2**16 - 1,
    "instrument_id": 2**32 - 1,
    "order_id": 2**64 - 1,
    "flags": 255,
    "sequence": 2**32 - 1,
}
MAX_SIZE = 2**32 - 1
# ts_recv,ts_event,rtype,publisher_id,instrument_id,action,side,price,size,channel_id,order_id,
# flags,ts_in_delta,sequence[,symbol]: the columns of Databento's MBO CSV export that matter.
MBO_COLUMNS = (
    "ts_recv",
    "publisher_id",
    "instrument_id",
    "action",
    "side",
    "price",
    "size",
    "order_id",
    "flags",
    "sequence",
)
# The DBN MBO record: length, rtype, publisher_id, instrument_id, ts_event, order_id, price, size,
# flags, channel_id, action, side, ts_recv, ts_in_delta, sequence (56 bytes, little-endian).
_RECORD = struct.Struct("<BBHIQQqIBBccQiI")
_RECORD_TS_OUT = struct.Struct("<BBHIQQqIBBccQiIQ")
_HEADER = struct.Struct("<BBHIQ")
_FIELD_NAMES = (
    "length",
    "rtype",
    "publisher_id",
    "instrument_id",
    "ts_event",
    "order_id",
    "price",
    "size",
    "flags",
    "channel_id",
    "action",
    "side",
    "ts_recv",
    "ts_in_delta",
    "sequence",
)

_ACTIONS = {
    "A": int(Action.ADD),
    "M": int(Action.UPDATE),
    "C": int(Action.CANCEL),
    "R": int(Action.CLEAR),
    "T": int(Action.NONE),
    "F": int(Action.NONE),
    "N": int(Action.NONE),
}
_NEEDS_ORDER = (int(Action.ADD), int(Action.UPDATE), int(Action.CANCEL))
_NEEDS_PRICE = (int(Action.ADD), int(Action.UPDATE))
_SIDES = {"B": int(Side.BUY), "A": int(Side.SELL)}
_new = tuple.__new__


@dataclass(frozen=True, slots=True)
class MboMetadata:
    """What a DBN file's metadata tells the conversion, as plain data.

    ``symbols`` maps an instrument_id to its (first day, end day, symbol) intervals, days
    counted since the epoch (UTC), the end excluded.
    """

    dataset: str
    record_size: int  # of an MBO record: 56, or 64 when each record carries ts_out
    symbols: dict[int, tuple[tuple[int, int, str], ...]] = field(default_factory=dict)


@dataclass(slots=True)
class NamerState:
    """An `MboNamer` as plain data, for the checkpoint: what a restart must decide as the
    uninterrupted run did (which publisher came first, which books were met and kept, what the
    in-band symbol mappings said, and the name each book's rows got on each day)."""

    first_publisher: int | None = None
    seen: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    mappings: list[tuple[int, str]] = field(default_factory=list)  # (instrument_id, symbol)
    names: list[tuple[str, int, str]] = field(default_factory=list)  # (key, day, name)
    matched: list[str] = field(default_factory=list)  # the names of `keep` met so far

    def to_plain(self) -> dict[str, Any]:
        """This state as plain data (a checkpoint's ``names``)."""
        return {
            "first_publisher": self.first_publisher,
            "seen": self.seen,
            "kept": self.kept,
            "mappings": self.mappings,
            "names": self.names,
            "matched": self.matched,
        }

    @classmethod
    def from_plain(cls, obj: Any, where: str, read: PlainReader) -> NamerState:
        """The state `to_plain` gave, checked whole.

        :raises PlainDataError: a value is missing or of the wrong type.
        """

        def is_key(value: Any) -> bool:
            match = _BOOK_KEY.fullmatch(value) if isinstance(value, str) else None
            return (
                match is not None and int(match[1]) <= _MAX_PUBLISHER and int(match[2]) <= _MAX_ID
            )

        def is_mapping(value: Any) -> bool:
            return (
                isinstance(value, list)
                and len(value) == 2
                and natural(value[0])
                and value[0] <= _MAX_ID
                and isinstance(value[1], str)
                and value[1] != ""
            )

        def is_name(value: Any) -> bool:
            return (
                isinstance(value, list)
                and len(value) == 3
                and is_key(value[0])
                and natural(value[1])
                and value[1] <= MAX_TS // NS_PER_DAY
                and isinstance(value[2], str)
            )

        return cls(
            first_publisher=read.integer(
                obj, "first_publisher", where, hi=_MAX_PUBLISHER, null=True
            ),
            seen=read.items(obj, "seen", where, is_key),
            kept=read.items(obj, "kept", where, is_key),
            mappings=[(i, s) for i, s in read.items(obj, "mappings", where, is_mapping)],
            names=[(k, d, n) for k, d, n in read.items(obj, "names", where, is_name)],
            matched=read.items(obj, "matched", where, lambda value: isinstance(value, str)),
        )


# A Databento book's key (publisher_id:instrument_id, a u16 and a u32).
_BOOK_KEY = re.compile(r"([0-9]{1,5}):([0-9]{1,10})")
_MAX_PUBLISHER = 2**16 - 1
_MAX_ID = 2**32 - 1


class MboNamer:
    """Book keys and row names of MBO records.

    A book's key is ``<publisher_id>:<instrument_id>``. The name of its rows on a day is fixed
    by `key` when it meets the book's first record of that day, from what is known then: the
    metadata's symbol for that day (``symbols``, set by the parser of each file), else the CSV's
    ``symbol``, else the latest in-band mapping (`learn`), else the id; with ``@<publisher_id>``
    for any publisher but the first one met. `name` only looks it up. With ``keep``
    (``--instruments``), a book is kept when its name, the first time it is met, is one of
    those: its key joins ``kept``, the set the books are filtered by, and its name ``matched``
    (the names of ``keep`` that were met, for the summary's ``instruments_not_seen``).

    ``changed`` is set whenever `snapshot` would give something new; the caller clears it.
    """

    __slots__ = (
        "_books",
        "_mapped",
        "_names",
        "changed",
        "first_publisher",
        "keep",
        "kept",
        "matched",
        "symbols",
    )

    def __init__(self, keep: frozenset[str] | None = None) -> None:
        self.symbols: dict[int, tuple[tuple[int, int, str], ...]] = {}
        self.first_publisher: int | None = None
        self.keep = keep
        self.kept: set[str] = set()
        self.matched: set[str] = set()
        self.changed = False
        # (publisher, instrument_id) -> (its key, the day of its last record met)
        self._books: dict[tuple[int, int], tuple[str, int]] = {}
        self._mapped: dict[int, str] = {}  # in-band symbol mappings: instrument_id -> symbol
        self._names: dict[tuple[str, int], str] = {}  # (key, day) -> the name of its rows

    def key(self, publisher: int, instrument_id: int, ts_recv: int, symbol: str = "") -> str:
        """The key of the book a record belongs to (``symbol``: the CSV's, or ""); the first
        record of a book on a day fixes the name of that book's rows on that day."""
        day = ts_recv // NS_PER_DAY
        book = self._books.get((publisher, instrument_id))
        if book is not None and book[1] == day:
            return book[0]
        return self._meet(publisher, instrument_id, day, symbol)

    def _meet(self, publisher: int, instrument_id: int, day: int, symbol: str) -> str:
        book = self._books.get((publisher, instrument_id))
        new = book is None
        if book is None:
            if self.first_publisher is None:
                self.first_publisher = publisher
            key = f"{publisher}:{instrument_id}"
            self.changed = True
        else:
            key = book[0]
        self._books[(publisher, instrument_id)] = (key, day)
        name = self._names.get((key, day))
        if name is None:
            name = self._names[(key, day)] = self._name_now(publisher, instrument_id, day, symbol)
            self.changed = True
        if new and self.keep is not None and name in self.keep:
            self.kept.add(key)
            self.matched.add(name)
        return key

    def _name_now(self, publisher: int, instrument_id: int, day: int, symbol: str) -> str:
        """A book's name on a day from what is known now."""
        for first, end, mapped in self.symbols.get(instrument_id, ()):
            if first <= day < end:
                symbol = mapped
                break
        else:
            symbol = symbol or self._mapped.get(instrument_id) or str(instrument_id)
        return symbol if publisher == self.first_publisher else f"{symbol}@{publisher}"

    def learn(self, instrument_id: int, symbol: str) -> None:
        """An in-band symbol mapping: ``instrument_id`` is ``symbol`` from here on (for the
        days of its books not met yet)."""
        if symbol and self._mapped.get(instrument_id) != symbol:
            self._mapped[instrument_id] = symbol
            self.changed = True

    def name(self, key: str, ts_recv: int) -> str:
        """The name of a book's rows on the day of ``ts_recv`` (fixed by `key`)."""
        day = ts_recv // NS_PER_DAY
        name = self._names.get((key, day))
        if name is None:  # not reached: every row's record passed through `key` first
            publisher, _, instrument_id = key.partition(":")
            name = self._name_now(int(publisher), int(instrument_id), day, "")
        return name

    def name_quotes(self, quotes: Any) -> Any:
        """The quotes, each named by its instrument's name on its day instead of its key (a
        compiled core's quotes are renamed in place)."""
        if not isinstance(quotes, list):
            quotes.rename(self.name)
            return quotes
        name = self.name
        return [q._replace(instrument=name(q.instrument, q.time)) for q in quotes]

    def snapshot(self) -> NamerState:
        """The namer's decisions so far, as plain data (sorted: the same decisions give the
        same state)."""
        return NamerState(
            self.first_publisher,
            sorted(key for key, _ in self._books.values()),
            sorted(self.kept),
            sorted(self._mapped.items()),
            sorted((key, day, name) for (key, day), name in self._names.items()),
            sorted(self.matched),
        )

    def restore(self, state: NamerState) -> None:
        """Load a `snapshot`."""
        self.first_publisher = state.first_publisher
        self._books = {}
        for key in state.seen:
            publisher, _, instrument_id = key.partition(":")
            self._books[(int(publisher), int(instrument_id))] = (key, -1)  # no day met yet
        self.kept.clear()
        self.kept.update(state.kept)
        self.matched.clear()
        self.matched.update(state.matched)
        self._mapped = dict(state.mappings)
        self._names = {(key, day): name for key, day, name in state.names}
        self.changed = False


def record_type_name(rtype: int) -> str:
    """How the counters name a DBN record type: ``mbo``, ``symbol_mapping``, ``system``,
    ``error``, else ``rtype_0xNN``."""
    return _TYPE_NAMES.get(rtype) or f"rtype_0x{rtype:02x}"


def symbol_mapping(record: bytes, ts_out: int) -> tuple[int, str] | None:
    """(instrument_id, stype_out_symbol) of a whole symbol-mapping record (DBN v1, v2 or v3,
    told apart by their size; ``ts_out``: the bytes each record carries after its own), or
    None when its size is neither layout's."""
    layout = _MAPPING_LAYOUTS.get(len(record) - ts_out)
    if layout is None:
        return None
    at, size = layout
    instrument_id = int.from_bytes(record[4:8], "little")
    return instrument_id, _c_string(record[at : at + size])


def error_text(record: bytes, ts_out: int) -> str:
    """The text of a whole error record (from the live gateway)."""
    size = _ERROR_TEXT.get(len(record) - ts_out, len(record) - ts_out - HEADER_SIZE)
    return _c_string(record[HEADER_SIZE : HEADER_SIZE + size])


def _c_string(data: bytes) -> str:
    return data.split(b"\0", 1)[0].decode("utf-8", "replace")


def describe_record(data: bytes, at: int, length: int) -> str:
    """A DBN record (``length`` bytes at ``at``) as the reject file shows it: its fields by
    name, like Databento's CSV (its header's, when it is not an MBO record's size)."""
    if length >= _RECORD.size and at + _RECORD.size <= len(data):
        values: tuple[object, ...] = _RECORD.unpack_from(data, at)
    elif at + _HEADER.size <= len(data):
        values = _HEADER.unpack_from(data, at)
    else:
        return f"length={data[at]} ({len(data) - at} bytes: not a whole record)"
    text = _describe(values)
    if length != _RECORD.size and length != _RECORD_TS_OUT.size:
        text += f" ({length} bytes)"
    return text


class _Counts:
    """Records by action, for the summary and metrics."""

    def __init__(self) -> None:
        self.by_action: dict[str, int] = {}

    def count(self, action: str) -> None:
        self.by_action[action] = self.by_action.get(action, 0) + 1


def _event(
    namer: MboNamer,
    index: int,
    publisher: int,
    instrument_id: int,
    order_id: int,
    price: int,
    size: int,
    flags: int,
    action_char: str,
    side_char: str,
    ts_recv: int,
    sequence: int,
    symbol: str,
    raw: str,
) -> Event | Reject:
    """The event of one MBO record (DBN or CSV alike), or its reject."""
    if not 0 <= ts_recv <= MAX_TS:  # 2^64 - 1 is Databento's undefined time
        return Reject(index, Reason.TIME, raw)
    action = _ACTIONS.get(action_char)
    if action is None:
        return Reject(index, Reason.ACTION, raw)
    side = _SIDES.get(side_char, -1)
    if action in _NEEDS_ORDER:
        if side < 0:
            return Reject(index, Reason.SIDE, raw)
        if action in _NEEDS_PRICE and price == UNDEF_PRICE:
            return Reject(index, Reason.PRICE, raw)
    elif side < 0:
        side = 0
    if action not in _NEEDS_PRICE:
        price = 0
    return _new(
        Event,
        (
            sequence,
            action,
            namer.key(publisher, instrument_id, ts_recv, symbol),
            str(order_id),
            side,
            price,
            size,
            ts_recv,
            index,
            raw,
            bool(flags & F_LAST),
        ),
    )


class MboParser(_Counts):
    """DBN records (whole records, as bytes) to events and rejects; ``line`` is the 1-based
    index of the record in the file, whatever its type.

    MBO records are converted (one of another size than the metadata's is a `bad record`);
    symbol-mapping records teach the namer (`bad record` when neither layout's size); error
    records' texts are kept in ``errors`` (index, text) for the log, the first `ERRORS_KEPT`;
    every other record is passed over. ``by_type`` counts them all by type.
    """

    def __init__(self, metadata: MboMetadata, namer: MboNamer) -> None:
        super().__init__()
        self.metadata = metadata
        self.namer = namer
        namer.symbols = metadata.symbols
        self.size = metadata.record_size
        self.ts_out = metadata.record_size - _RECORD.size
        self.record = _RECORD_TS_OUT if self.ts_out else _RECORD
        self.errors: list[tuple[int, str]] = []
        self._types: dict[int, int] = {}

    @property
    def by_type(self) -> dict[str, int]:
        """Records read, by type (`record_type_name`), sorted by name."""
        return dict(sorted((record_type_name(t), n) for t, n in self._types.items()))

    def parse(self, data: bytes, first_record: int) -> tuple[list[Event], list[Reject]]:
        """Convert whole records numbered from ``first_record``. A block that does not end
        on a record's end (the splitter never makes one) ends in one `bad record`."""
        events: list[Event] = []
        rejects: list[Reject] = []
        size = self.size
        count, rest = divmod(len(data), size)
        if (
            not rest
            and data[0::size] == bytes((size // 4,)) * count
            and data[1::size] == bytes((RTYPE_MBO,)) * count
        ):  # MBO records only, the common case: no walk
            for index, values in enumerate(self.record.iter_unpack(data), first_record):
                self._mbo(index, values, events, rejects)
            if count:
                self._types[RTYPE_MBO] = self._types.get(RTYPE_MBO, 0) + count
            return events, rejects
        types = self._types
        at, end, index = 0, len(data), first_record
        while at < end:
            length = data[at] * 4
            if length < HEADER_SIZE or length > end - at:
                rejects.append(Reject(index, Reason.RECORD, describe_record(data, at, end - at)))
                break
            rtype = data[at + 1]
            types[rtype] = types.get(rtype, 0) + 1
            if rtype == RTYPE_MBO:
                if length == size:
                    self._mbo(index, self.record.unpack_from(data, at), events, rejects)
                else:
                    rejects.append(Reject(index, Reason.RECORD, describe_record(data, at, length)))
            elif rtype == RTYPE_SYMBOL_MAPPING:
                mapping = symbol_mapping(data[at : at + length], self.ts_out)
                if mapping is None:
                    rejects.append(Reject(index, Reason.RECORD, describe_record(data, at, length)))
                else:
                    self.namer.learn(*mapping)
            elif rtype == RTYPE_ERROR and types[rtype] <= ERRORS_KEPT:
                self.errors.append((index, error_text(data[at : at + length], self.ts_out)))
            at += length
            index += 1
        return events, rejects

    def _mbo(
        self, index: int, values: tuple[Any, ...], events: list[Event], rejects: list[Reject]
    ) -> None:
        _, _, publisher, instrument_id, _, order_id, price, qty = values[:8]
        flags, _, action, side, ts_recv, _, sequence = values[8:15]
        action_char = action.decode("latin-1")
        self.count(action_char)
        result = _event(
            self.namer,
            index,
            publisher,
            instrument_id,
            order_id,
            price,
            qty,
            flags,
            action_char,
            side.decode("latin-1"),
            ts_recv,
            sequence,
            "",
            "",
        )
        if type(result) is Reject:
            rejects.append(result._replace(raw=_describe(values)))
        else:
            events.append(result)  # type: ignore[arg-type]


def _describe(values: tuple[object, ...]) -> str:
    """An MBO record's unpacked fields as the reject file shows them."""
    shown = []
    for name, value in zip(_FIELD_NAMES, values, strict=False):
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        shown.append(f"{name}={value}")
    return " ".join(shown)


def is_mbo_header(names: Iterable[str]) -> bool:
    """Whether a CSV header is Databento's MBO export (SPEC §12)."""
    present = set(names)
    return all(column in present for column in MBO_COLUMNS)


class MboCsvParser(_Counts):
    """Databento's MBO CSV export (the ``dbn`` CLI's, with or without ``symbol``, integer or
    pretty prices and times) to the same events as the DBN records it was made from.

    :raises ValueError: the header lacks an MBO column or names one twice.
    """

    def __init__(self, header: str, namer: MboNamer) -> None:
        super().__init__()
        names = [name.strip() for name in header.removeprefix("\ufeff").rstrip("\r").split(",")]
        missing = [c for c in MBO_COLUMNS if c not in names]
        if missing:
            raise ValueError(f"header lacks MBO column(s) {', '.join(missing)}")
        twice = [c for c in (*MBO_COLUMNS, "symbol") if names.count(c) > 1]
        if twice:
            raise ValueError(f"header names column(s) {', '.join(twice)} more than once")
        self.field_count = len(names)
        self._index = {c: names.index(c) for c in (*MBO_COLUMNS, "symbol") if c in names}
        self.namer = namer
        self._seconds: dict[str, int] = {}

    def parse(self, data: bytes, first_line: int) -> tuple[list[Event], list[Reject]]:
        """Convert whole lines (each ending in a newline) numbered from ``first_line``."""
        events: list[Event] = []
        rejects: list[Reject] = []
        for line, raw in enumerate(data.split(b"\n")[:-1], first_line):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                rejects.append(Reject(line, Reason.UTF8, raw.decode("utf-8", "backslashreplace")))
                continue
            result = self.parse_row(text.removesuffix("\r"), line)
            if type(result) is Reject:
                rejects.append(result)
            else:
                events.append(result)  # type: ignore[arg-type]
        return events, rejects

    def parse_row(self, text: str, line: int) -> Event | Reject:
        """The event of one CSV row, or its reject. The integer columns are plain unsigned
        integers within their DBN field's type (`bad record` otherwise), the size one of 0 to
        2^32 - 1 (`bad qty`), as in a DBN record."""
        fields = next(csv.reader([text]), []) if '"' in text else text.split(",")
        if len(fields) != self.field_count:
            return Reject(line, Reason.FIELD_COUNT, text)
        at = self._index
        action_char = fields[at["action"]]
        self.count(action_char)
        publisher, instrument_id, order_id, flags, sequence = (
            _plain_int(fields[at[name]], limit) for name, limit in _CSV_LIMITS.items()
        )
        if publisher is None or instrument_id is None or order_id is None:
            return Reject(line, Reason.RECORD, text)
        if flags is None or sequence is None:
            return Reject(line, Reason.RECORD, text)
        price = _csv_price(fields[at["price"]])
        if price is None:
            return Reject(line, Reason.PRICE, text)
        size = _plain_int(fields[at["size"]], MAX_SIZE)
        if size is None:
            return Reject(line, Reason.QTY, text)
        ts_recv = self._nanoseconds(fields[at["ts_recv"]])
        if ts_recv is None:
            return Reject(line, Reason.TIME, text)
        symbol = fields[at["symbol"]] if "symbol" in at else ""
        return _event(
            self.namer,
            line,
            publisher,
            instrument_id,
            order_id,
            price,
            size,
            flags,
            action_char,
            fields[at["side"]],
            ts_recv,
            sequence,
            symbol,
            text,
        )

    def _nanoseconds(self, text: str) -> int | None:
        """``1609160400000704060`` or ``2020-12-28T13:00:00.000704060Z`` as ns since the epoch
        (a time out of range is refused by `_event`)."""
        plain = _plain_int(text, 2**64 - 1)
        if plain is not None:
            return plain
        if len(text) != 30 or text[-1] != "Z" or text[19] != "." or not text[20:29].isdigit():
            return None
        second = text[:19]
        base = self._seconds.get(second)
        if base is None:
            try:
                stamp = datetime.fromisoformat(second).replace(tzinfo=UTC)
            except ValueError:
                return None
            if len(self._seconds) > 1 << 16:
                self._seconds.clear()
            base = self._seconds[second] = int(stamp.timestamp()) * 10**9
        return base + int(text[20:29])


def _plain_int(text: str, limit: int) -> int | None:
    """A plain unsigned integer (ASCII digits only) up to ``limit``, else None."""
    if text.isdigit() and text.isascii() and len(text) <= 20:
        value = int(text)
        return value if value <= limit else None
    return None


def _csv_price(text: str) -> int | None:
    """A price in 1e-9: ``3722750000000`` (fixed point), ``3722.750000000`` (pretty), empty
    for the undefined price, a minus sign allowed (spreads trade below zero)."""
    if not text:
        return UNDEF_PRICE
    negative = text.startswith("-")
    digits = text[1:] if negative else text
    whole, dot, fraction = digits.partition(".")
    if not (whole.isdigit() and whole.isascii()) or len(whole) > 19:
        return None
    if dot and not (fraction.isdigit() and fraction.isascii() and len(fraction) <= 9):
        return None
    value = int(whole) * 10**9 + int(fraction.ljust(9, "0")) if dot else int(whole)
    if value > UNDEF_PRICE:
        return None
    return -value if negative else value
