"""Batches of events and quotes as bytes: the bodies of the JetStream messages (SPEC §13).

The reference of the wire format; the compiled core packs and unpacks the same bytes from its C
arrays, with no Python object per record. Little-endian, fixed-size fields then the strings:

    events body  b"L3E2", then per event: seq u64, price i64, qty i64, line i64, time i64,
                 ts_event i64, action u8, side u8, last u8, pad u8, then the sizes (u32) of the
                 instrument,
                 order id and time text, then those bytes
    quotes body  b"L1Q1", then per quote: bid, ask, bid_size, ask_size, time (i64), seq u64,
                 then the sizes (u32) of the instrument and time text, then those bytes
    rows body    b"L1R1", then per row of a schema (SPEC §14, `core.schemas.Row`): ts_recv,
                 ts_event, price, size (i64), sequence u64, flags u8, action u8, side u8 (their
                 ASCII letter, 0 for none), nulls u8 (1: no price, 2: no size), the count n of
                 level values u16, the size (u32) of the instrument; then a bitmap of the n
                 values (bit set: null), the n values (i64, 0 when null), the instrument

A time field is ns since the epoch when >= 0 (Databento), -1 when the time is the text that
follows, and ``-2 - fields`` for a canonical CSV time (``YYYY-MM-DD HH:MM:SS.ffffff UTC``) packed
into 60 bits (`pack_time`): 8 bytes instead of 30, a quarter of an event's size.

The raw line of an event is not sent (a worker never rejects). An event goes to partition
``crc32(instrument) % partitions``: stable on every machine and run.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence

from l3tol1.core.numbers import NS_PER_DAY
from l3tol1.core.records import Action, Event, Quote, Side
from l3tol1.core.schemas import Row

__all__ = [
    "EVENTS_MAGIC",
    "QUOTES_MAGIC",
    "ROWS_MAGIC",
    "Packed",
    "instrument_days",
    "pack_events",
    "pack_quotes",
    "pack_rows",
    "partition_of",
    "unpack_events",
    "unpack_quotes",
    "unpack_rows",
]

EVENTS_MAGIC = b"L3E2"  # L3E1 had no ts_event (before the output schemas, SPEC §14)
QUOTES_MAGIC = b"L1Q1"
EVENT = struct.Struct("<QqqqqqBBBxIII")
QUOTE = struct.Struct("<qqqqqQII")
ROWS_MAGIC = b"L1R1"
ROW = struct.Struct("<qqqqQBBBBHI")
_ROW_ACTIONS = frozenset(b"AMCRTFN")  # a row's action letters (0: none, a sampled row)
_ROW_SIDES = frozenset(b"BAN")
_NO_PRICE, _NO_SIZE = 1, 2
MAX_SEQ = 2**64 - 1
PACKED_TIMES = 1 << 60
_MAX_ACTION = max(Action)
_MAX_SIDE = max(Side)
# Each field of a canonical time: its place in the packed form (shift, bits), in the text
# (offset, width), and the most it may be to be packed.
_TIME_FIELDS = ((46, 14, 0, 4, 9999), (42, 4, 5, 2, 15), (37, 5, 8, 2, 31), (32, 5, 11, 2, 31),
                (26, 6, 14, 2, 63), (20, 6, 17, 2, 63), (0, 20, 20, 6, 999999))  # fmt: skip

# One message of a partition: (partition, body, first seq, last seq, events).
Packed = tuple[int, bytes, int, int, int]


def partition_of(instrument: str, partitions: int) -> int:
    """The partition of an instrument: a stable hash (the same on every machine and run)."""
    return zlib.crc32(instrument.encode()) % partitions


def pack_time(text: str) -> int | None:
    """A canonical CSV time's fields in 60 bits, or None when ``text`` is not one that
    `render_time` writes back exactly (the compiled core's rule, field for field)."""
    if len(text) != 30 or not text.isascii() or text[26:] != " UTC":
        return None
    if text[4] + text[7] + text[10] + text[13] + text[16] + text[19] != "-- ::.":
        return None
    packed = 0
    for shift, _, at, width, limit in _TIME_FIELDS:
        digits = text[at : at + width]
        if not (digits.isdigit() and int(digits) <= limit):
            return None
        packed |= int(digits) << shift
    return packed


def render_time(packed: int) -> str:
    """The 30-character text of a `pack_time` value (of any 60 bits: a field too large for its
    width keeps its last digits, as in the compiled core)."""
    parts = [
        f"{((packed >> shift) & ((1 << bits) - 1)) % 10**width:0{width}d}"
        for shift, bits, _, width, _ in _TIME_FIELDS
    ]
    year, month, day, hour, minute, second, micros = parts
    return f"{year}-{month}-{day} {hour}:{minute}:{second}.{micros} UTC"


def _time_field(time: str | int) -> tuple[int, bytes]:
    """A record's time field and the text that follows it."""
    if isinstance(time, int):
        return time, b""
    packed = pack_time(time)
    return (-1, time.encode()) if packed is None else (-2 - packed, b"")


def _time_of(field: int, text: bytes) -> str | int:
    if field >= 0:
        return field
    return text.decode() if field == -1 else render_time(-2 - field)


def _event_record(e: Event) -> bytes:
    inst, oid = e.instrument.encode(), e.order_id.encode()
    time_ns, time = _time_field(e.time)
    head = EVENT.pack(e.seq, e.price, e.qty, e.line, time_ns, e.ts_event, e.action, e.side,
                      int(e.last), len(inst), len(oid), len(time))  # fmt: skip
    return head + inst + oid + time


def _bodies(records: Sequence[bytes], magic: bytes, max_body: int) -> list[tuple[int, int]]:
    """Where ``records`` split into bodies of at most ``max_body`` bytes (at least one record
    each): (start, end) index pairs."""
    cuts: list[tuple[int, int]] = []
    start, size = 0, len(magic)
    for i, record in enumerate(records):
        if i > start and size + len(record) > max_body:
            cuts.append((start, i))
            start, size = i, len(magic)
        size += len(record)
    if start < len(records):
        cuts.append((start, len(records)))
    return cuts


def pack_events(
    events: Iterable[Event],
    partitions: int,
    last_seq: Sequence[int],
    max_body: int,
    *,
    by_line: bool = False,
) -> tuple[list[Packed], int]:
    """Events (in order) as message bodies per partition, in partition order, each at most
    ``max_body`` bytes; an event at or below its partition's ``last_seq`` (-1: none) is left
    out. An event's place is its seq, or with ``by_line`` its line (record index: Databento's
    records, whose sequence numbers are the venue's, not one order). Returns the messages (with
    the first and last place of each) and how many events were left out."""
    by_partition: dict[int, list[Event]] = {}
    skipped = 0
    for e in events:
        p = partition_of(e.instrument, partitions)
        if (e.line if by_line else e.seq) <= last_seq[p]:
            skipped += 1
            continue
        by_partition.setdefault(p, []).append(e)
    out: list[Packed] = []
    for p in sorted(by_partition):
        part = by_partition[p]
        records = [_event_record(e) for e in part]
        for start, end in _bodies(records, EVENTS_MAGIC, max_body):
            body = EVENTS_MAGIC + b"".join(records[start:end])
            first, last = part[start], part[end - 1]
            if by_line:
                out.append((p, body, first.line, last.line, end - start))
            else:
                out.append((p, body, first.seq, last.seq, end - start))
    return out, skipped


def instrument_days(events: Iterable[Event]) -> set[tuple[str, int]]:
    """The (instrument, day) pairs of events with ns times: what the names of Databento rows
    depend on (SPEC §12)."""
    return {(e.instrument, e.time // NS_PER_DAY) for e in events if isinstance(e.time, int)}


def _records(
    body: bytes, mark: bytes, record: struct.Struct, texts: int, kind: str
) -> Iterator[tuple[tuple[int, ...], list[bytes]]]:
    """The records of a body: each one's fixed fields and its ``texts`` strings (whose sizes
    are its last fields).

    :raises ValueError: no ``mark`` first, or a record cut short.
    """
    if body[:4] != mark:
        raise ValueError(f"not a batch of {kind}s (no {mark.decode()} mark)")
    at, end, n = 4, len(body), 0
    while at < end:
        if end - at < record.size:
            raise ValueError(f"{kind} {n} is cut short")
        fields = record.unpack_from(body, at)
        at += record.size
        sizes = fields[-texts:]
        if at + sum(sizes) > end:
            raise ValueError(f"{kind} {n} is cut short")
        strings = []
        for size in sizes:
            strings.append(body[at : at + size])
            at += size
        yield fields, strings
        n += 1


def unpack_events(body: bytes) -> list[Event]:
    """The events of a message body.

    :raises ValueError: the body is not a batch of events (a malformed message).
    """
    events: list[Event] = []
    for fields, (inst, oid, time) in _records(body, EVENTS_MAGIC, EVENT, 3, "event"):
        seq, price, qty, line, time_ns, ts_event, action, side, last, *_ = fields
        if (
            action > _MAX_ACTION
            or side > _MAX_SIDE
            or last > 1
            or ts_event < 0
            or not _time_ok(time_ns, len(time))
        ):
            raise ValueError(f"event {len(events)} has a field out of range")
        events.append(Event(seq, action, inst.decode(), oid.decode(), side, price, qty,
                            _time_of(time_ns, time), line, "", last == 1, ts_event))  # fmt: skip
    return events


def _time_ok(field: int, text_size: int) -> bool:
    """Whether a time field and the size of its text agree (text only with -1)."""
    return (field == -1) if text_size else (field != -1 and field > -2 - PACKED_TIMES)


def _quote_record(q: Quote) -> bytes:
    inst = q.instrument.encode()
    time_ns, time = _time_field(q.time)
    head = QUOTE.pack(q.bid, q.ask, q.bid_size, q.ask_size, time_ns, q.seq, len(inst), len(time))
    return head + inst + time


def pack_quotes(quotes: Iterable[Quote], max_body: int) -> list[bytes]:
    """Quotes in order as message bodies of at most ``max_body`` bytes (one quote at least)."""
    records = [_quote_record(q) for q in quotes]
    return [
        QUOTES_MAGIC + b"".join(records[start:end])
        for start, end in _bodies(records, QUOTES_MAGIC, max_body)
    ]


def unpack_quotes(body: bytes) -> list[Quote]:
    """The quotes of a message body.

    :raises ValueError: the body is not a batch of quotes (a malformed message).
    """
    quotes: list[Quote] = []
    for fields, (inst, time) in _records(body, QUOTES_MAGIC, QUOTE, 2, "quote"):
        bid, ask, bid_size, ask_size, time_ns, seq, *_ = fields
        if not _time_ok(time_ns, len(time)):
            raise ValueError(f"quote {len(quotes)} has a field out of range")
        quotes.append(Quote(_time_of(time_ns, time), inst.decode(), bid, ask, bid_size,
                            ask_size, seq))  # fmt: skip
    return quotes


def _row_record(r: Row) -> bytes:
    inst = r.instrument.encode()
    levels = r.levels
    nulls = bytearray((len(levels) + 7) // 8)
    values = []
    for i, value in enumerate(levels):
        if value is None:
            nulls[i >> 3] |= 1 << (i & 7)
            values.append(0)
        else:
            values.append(value)
    head = ROW.pack(
        r.ts_recv,
        r.ts_event,
        0 if r.price is None else r.price,
        0 if r.size is None else r.size,
        r.sequence,
        r.flags,
        ord(r.action) if r.action else 0,
        ord(r.side) if r.side else 0,
        (_NO_PRICE if r.price is None else 0) | (_NO_SIZE if r.size is None else 0),
        len(levels),
        len(inst),
    )
    return head + bytes(nulls) + struct.pack(f"<{len(values)}q", *values) + inst


def pack_rows(rows: Iterable[Row], max_body: int) -> list[bytes]:
    """A schema's rows in order as message bodies of at most ``max_body`` bytes (one row at
    least each)."""
    records = [_row_record(r) for r in rows]
    return [
        ROWS_MAGIC + b"".join(records[start:end])
        for start, end in _bodies(records, ROWS_MAGIC, max_body)
    ]


def unpack_rows(body: bytes, depth: int | None = None) -> list[Row]:
    """The rows of a message body; with ``depth``, each must show that many levels.

    :raises ValueError: the body is not a batch of rows (a malformed message).
    """
    if body[:4] != ROWS_MAGIC:
        raise ValueError(f"not a batch of rows (no {ROWS_MAGIC.decode()} mark)")
    rows: list[Row] = []
    at, end = 4, len(body)
    while at < end:
        n = len(rows)
        if end - at < ROW.size:
            raise ValueError(f"row {n} is cut short")
        ts_recv, ts_event, price, size, seq, flags, action, side, nulls, count, inst_size = (
            ROW.unpack_from(body, at)
        )
        at += ROW.size
        bitmap = (count + 7) // 8
        if at + bitmap + 8 * count + inst_size > end:
            raise ValueError(f"row {n} is cut short")
        if (
            ts_recv < 0
            or ts_event < 0
            or flags > 15
            or not (action == 0 or action in _ROW_ACTIONS)
            or not (side == 0 or side in _ROW_SIDES)
            or nulls > _NO_PRICE | _NO_SIZE
            or count == 0
            or count % 6
            or (depth is not None and count != 6 * depth)
        ):
            raise ValueError(f"row {n} has a field out of range")
        null = body[at : at + bitmap]
        at += bitmap
        values = struct.unpack_from(f"<{count}q", body, at)
        at += 8 * count
        levels = tuple(None if null[i >> 3] & (1 << (i & 7)) else v for i, v in enumerate(values))
        instrument = body[at : at + inst_size].decode()
        at += inst_size
        rows.append(
            Row(
                ts_recv,
                ts_event,
                instrument,
                chr(action) if action else "",
                chr(side) if side else "",
                None if nulls & _NO_PRICE else price,
                None if nulls & _NO_SIZE else size,
                seq,
                flags,
                levels,
            )
        )
    return rows
