"""Databento MBO records to events: SPEC §12, for DBN records and for Databento's CSV export.

One venue event may take several records; only the last carries ``F_LAST`` (0x80), and the write
rule runs only after it (`Event.last`). Records are applied in file order: no resequencing.

- actions: ``A`` add, ``M`` modify (the order now has this price and size, as UPDATE), ``C``
  cancel (subtract ``size``; at zero or below the order goes), ``R`` clear (the book empties),
  ``T`` trade (PRINT), ``F`` fill (FILL) and ``N`` none change nothing;
- sides: ``B`` is BUY, ``A`` SELL, ``N`` none; ``N`` (or anything else) is refused on A, M and
  C (`bad side`), and is NONE on the other actions;
- prices are integers in 1e-9, as held everywhere (an add or modify without one is `bad price`);
- the time is ``ts_recv`` in nanoseconds since the epoch, 0 to 2^63 - 1 (`bad time` beyond: 2^64
  - 1 is Databento's undefined timestamp); ``seq_num`` is ``sequence``.

A DBN stream holds other records besides MBO ones, each with its own length (a live recording
starts with symbol-mapping records and carries system and error records): `MboParser` walks
them by their length, learns names from the symbol mappings, passes every other type over, and
counts them all by type.

Books are kept per (publisher_id, instrument_id): an event's ``instrument`` is that key
(``1:5482``); naming.py names their rows. Databento's CSV export is read by mbo_csv.py into the
same events.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from l3tol1.core.naming import MboNamer
from l3tol1.core.numbers import MAX_TIME_NS
from l3tol1.core.records import Action, Event, Reason, Reject, Side

__all__ = [
    "ERRORS_KEPT",
    "F_LAST",
    "HEADER_SIZE",
    "MAX_TS",
    "RTYPE_ERROR",
    "RTYPE_MBO",
    "RTYPE_SYMBOL_MAPPING",
    "UNDEF_PRICE",
    "MboMetadata",
    "MboParser",
    "describe_record",
    "error_text",
    "record_type_name",
    "symbol_mapping",
]

F_LAST = 0x80
UNDEF_PRICE = 2**63 - 1
MAX_TS = MAX_TIME_NS  # the last ts_recv held
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
    "T": int(Action.PRINT),
    "F": int(Action.FILL),
    "N": int(Action.NONE),
}
_NEEDS_ORDER = (int(Action.ADD), int(Action.UPDATE), int(Action.CANCEL))
_NEEDS_PRICE = (int(Action.ADD), int(Action.UPDATE))
_SIDES = {"B": int(Side.BUY), "A": int(Side.SELL), "N": int(Side.NONE)}
_SIDE_NONE = int(Side.NONE)
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
    ts_event: int,
    sequence: int,
    symbol: str,
    raw: str,
) -> Event | Reject:
    """The event of one MBO record (DBN or CSV alike), or its reject. The price is kept
    whatever the action (`UNDEF_PRICE`: none), for the output schemas' rows (SPEC §14)."""
    if not (0 <= ts_recv <= MAX_TS and 0 <= ts_event <= MAX_TS):  # 2^64 - 1: undefined
        return Reject(index, Reason.TIME, raw)
    action = _ACTIONS.get(action_char)
    if action is None:
        return Reject(index, Reason.ACTION, raw)
    side = _SIDES.get(side_char, -1)
    if action in _NEEDS_ORDER:
        if side < 0 or side == _SIDE_NONE:
            return Reject(index, Reason.SIDE, raw)
        if action in _NEEDS_PRICE and price == UNDEF_PRICE:
            return Reject(index, Reason.PRICE, raw)
    elif side < 0:
        side = _SIDE_NONE
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
            ts_event,
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
        _, _, publisher, instrument_id, ts_event, order_id, price, qty = values[:8]
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
            ts_event,
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
