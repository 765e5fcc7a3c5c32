"""Databento's MBO CSV export to events (SPEC §12): the ``dbn`` CLI's CSV, with or without
``symbol``, integer or pretty prices and times, read into the same events as the DBN records it
was made from (mbo.py's rules, shared).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from datetime import UTC, datetime

from l3tol1.core.mbo import UNDEF_PRICE, _Counts, _event
from l3tol1.core.naming import MboNamer
from l3tol1.core.records import Event, Reason, Reject

__all__ = ["MBO_COLUMNS", "MboCsvParser", "is_mbo_header"]

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
        self._index = {
            c: names.index(c) for c in (*MBO_COLUMNS, "symbol", "ts_event") if c in names
        }
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
        # ts_event is optional: an export without it has the records' ts_recv as theirs; the
        # pretty export writes a ts_event of 0 as an empty field (the DBN record's value is 0)
        if "ts_event" not in at:
            ts_event = ts_recv
        elif fields[at["ts_event"]] == "":
            ts_event = 0
        else:
            ts_event = self._nanoseconds(fields[at["ts_event"]])
        if ts_recv is None or ts_event is None:
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
            ts_event,
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
