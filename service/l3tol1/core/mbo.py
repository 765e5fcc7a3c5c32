"""Databento MBO records to events: SPEC §12, for DBN records and for Databento's CSV export.

One venue event may take several records; only the last carries ``F_LAST`` (0x80), and the write
rule runs only after it (`Event.last`). Records are applied in file order: no resequencing.

- actions: ``A`` add, ``M`` modify (the order now has this price and size, as UPDATE), ``C``
  cancel (subtract ``size``; at zero or below the order goes), ``R`` clear (the book empties),
  ``T`` trade, ``F`` fill and ``N`` none change nothing;
- sides: ``B`` is BUY and ``A`` SELL; ``N`` is refused on A, M and C (`bad side`);
- prices are integers in 1e-9, as held everywhere (an add or modify without one is `bad price`);
- the time is ``ts_recv`` in nanoseconds since the epoch; ``seq_num`` is ``sequence``.

Books are kept per (publisher_id, instrument_id): an event's ``instrument`` is that key
(``1:5482``), and `MboNamer.name_quotes` names each L1 row by the instrument's symbol on the
row's date (from the file's symbology, or the CSV's ``symbol`` column), else its instrument_id.
Two publishers never share a book, nor a name: the rows of every publisher but the first one
met get ``@<publisher_id>`` after the name (``ESH1@2``).
"""

from __future__ import annotations

import csv
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from l3tol1.core.records import Action, Event, Reason, Reject, Side

__all__ = [
    "F_LAST",
    "MBO_COLUMNS",
    "UNDEF_PRICE",
    "MboCsvParser",
    "MboMetadata",
    "MboNamer",
    "MboParser",
    "NamerState",
    "is_mbo_header",
]

F_LAST = 0x80
UNDEF_PRICE = 2**63 - 1
RTYPE_MBO = 160
NS_PER_DAY = 86_400 * 10**9
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
    record_size: int  # 56, or 64 when each record carries ts_out
    symbols: dict[int, tuple[tuple[int, int, str], ...]] = field(default_factory=dict)


@dataclass(slots=True)
class NamerState:
    """An `MboNamer` as plain data, for the checkpoint: what a restart must decide as the
    uninterrupted run did (which publisher came first, which books were met and kept)."""

    first_publisher: int | None = None
    seen: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    matched: list[str] = field(default_factory=list)  # the kept names met so far


class MboNamer:
    """Book keys and row names of MBO records.

    A book's key is ``<publisher_id>:<instrument_id>``; a row's name is the instrument's symbol
    on the row's date, else its id, with ``@<publisher_id>`` for any publisher but the first
    one met. With ``keep`` (``--instruments``), a book is kept when its name, the first time
    it is met, is one of those: its key joins ``kept``, the set the books are filtered by, and
    its name ``matched`` (the names of ``keep`` that were met).
    """

    __slots__ = (
        "_keys",
        "_names",
        "_symbols_seen",
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
        self._keys: dict[tuple[int, int], str] = {}
        self._names: dict[tuple[str, int], str] = {}  # (key, day) -> the rows' name
        self._symbols_seen: dict[tuple[int, int, int], str] = {}  # from a CSV's symbol column

    def key(self, publisher: int, instrument_id: int, ts_recv: int, symbol: str) -> str:
        """The key of the book a record belongs to (``symbol``: the CSV's, or "")."""
        key = self._keys.get((publisher, instrument_id))
        if key is None:
            if self.first_publisher is None:
                self.first_publisher = publisher
            key = self._keys[(publisher, instrument_id)] = f"{publisher}:{instrument_id}"
            if self.keep is not None and (name := self.name(key, ts_recv, symbol)) in self.keep:
                self.kept.add(key)
                self.matched.add(name)
        if symbol:
            day = ts_recv // NS_PER_DAY
            self._symbols_seen[(publisher, instrument_id, day)] = symbol
        return key

    def snapshot(self) -> NamerState:
        """The namer's decisions so far, as plain data."""
        return NamerState(
            self.first_publisher,
            sorted(self._keys.values()),
            sorted(self.kept),
            sorted(self.matched),
        )

    def restore(self, state: NamerState) -> None:
        """Load a `snapshot`."""
        self.first_publisher = state.first_publisher
        for key in state.seen:
            publisher, _, instrument_id = key.partition(":")
            self._keys[(int(publisher), int(instrument_id))] = key
        self.kept.clear()
        self.kept.update(state.kept)
        self.matched.clear()
        self.matched.update(state.matched)

    def name(self, key: str, ts_recv: int, symbol: str = "") -> str:
        """The name of a book's rows on the day of ``ts_recv``."""
        day = ts_recv // NS_PER_DAY
        name = self._names.get((key, day))
        if name is None:
            publisher_text, _, instrument_text = key.partition(":")
            publisher, instrument_id = int(publisher_text), int(instrument_text)
            symbol = symbol or self._symbols_seen.get((publisher, instrument_id, day), "")
            if not symbol:
                symbol = next(
                    (
                        s
                        for first, end, s in self.symbols.get(instrument_id, ())
                        if first <= day < end
                    ),
                    instrument_text,
                )
            name = symbol if publisher == self.first_publisher else f"{symbol}@{publisher}"
            if len(self._names) > 1 << 16:
                self._names.clear()
            self._names[(key, day)] = name
        return name

    def name_quotes(self, quotes: Any) -> Any:
        """The quotes, each named by its instrument's name on its day instead of its key (a
        compiled core's quotes are renamed in place)."""
        if not isinstance(quotes, list):
            quotes.rename(self.name)
            return quotes
        name = self.name
        return [q._replace(instrument=name(q.instrument, q.time)) for q in quotes]


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
    """DBN MBO records (whole records, as bytes) to events and rejects; ``line`` is the 1-based
    index of the record in the file."""

    def __init__(self, metadata: MboMetadata, namer: MboNamer) -> None:
        super().__init__()
        self.metadata = metadata
        self.namer = namer
        namer.symbols = metadata.symbols
        self.record = _RECORD_TS_OUT if metadata.record_size == 64 else _RECORD

    def parse(self, data: bytes, first_record: int) -> tuple[list[Event], list[Reject]]:
        """Convert whole records numbered from ``first_record``."""
        events: list[Event] = []
        rejects: list[Reject] = []
        size = self.metadata.record_size
        count = self.count
        for index, values in enumerate(self.record.iter_unpack(data), first_record):
            length, rtype, publisher, instrument_id, _, order_id, price, qty = values[:8]
            flags, _, action, side, ts_recv, _, sequence = values[8:15]
            action_char = action.decode("latin-1")
            count(action_char)
            if rtype != RTYPE_MBO or length * 4 != size:
                rejects.append(Reject(index, Reason.RECORD, _describe(values)))
                continue
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
        return events, rejects


def _describe(values: tuple[object, ...]) -> str:
    """A record as the reject file shows it: its fields by name (like Databento's CSV)."""
    names = [
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
    ]
    shown = []
    for name, value in zip(names, values, strict=False):
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
        """The event of one CSV row, or its reject."""
        fields = next(csv.reader([text]), []) if '"' in text else text.split(",")
        if len(fields) != self.field_count:
            return Reject(line, Reason.FIELD_COUNT, text)
        at = self._index
        action_char = fields[at["action"]]
        self.count(action_char)
        try:
            publisher = int(fields[at["publisher_id"]])
            instrument_id = int(fields[at["instrument_id"]])
            order_id = int(fields[at["order_id"]])
            flags = int(fields[at["flags"]])
            sequence = int(fields[at["sequence"]])
        except ValueError:
            return Reject(line, Reason.RECORD, text)
        price = _csv_price(fields[at["price"]])
        if price is None:
            return Reject(line, Reason.PRICE, text)
        size = _plain_int(fields[at["size"]])
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
        """``1609160400000704060`` or ``2020-12-28T13:00:00.000704060Z`` as ns since the epoch."""
        plain = _plain_int(text)
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


def _plain_int(text: str) -> int | None:
    if text.isdigit() and text.isascii() and len(text) <= 20:
        return int(text)
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
