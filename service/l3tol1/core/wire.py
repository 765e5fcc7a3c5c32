"""Batches of events and quotes as bytes: the bodies of the JetStream messages (SPEC §13).

The reference of the wire format; the compiled core packs and unpacks the same bytes from its C
arrays, with no Python object per record. Little-endian, fixed-size fields then the strings:

    events body  b"L3E1", then per event: seq u64, price i64, qty i64, line i64, time_ns i64
                 (-1: the time is text), action u8, side u8, last u8, pad u8, then the sizes
                 (u32) of the instrument, order id and time text, then those bytes
    quotes body  b"L1Q1", then per quote: bid, ask, bid_size, ask_size, time_ns (i64), seq u64,
                 then the sizes (u32) of the instrument and time text, then those bytes

The raw line of an event is not sent (a worker never rejects). An event goes to partition
``crc32(instrument) % partitions``: stable on every machine and run.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Sequence

from l3tol1.core.records import Event, Quote

__all__ = [
    "EVENTS_MAGIC",
    "QUOTES_MAGIC",
    "Packed",
    "pack_events",
    "pack_quotes",
    "partition_of",
    "unpack_events",
    "unpack_quotes",
]

EVENTS_MAGIC = b"L3E1"
QUOTES_MAGIC = b"L1Q1"
EVENT = struct.Struct("<QqqqqBBBxIII")
QUOTE = struct.Struct("<qqqqqQII")
MAX_SEQ = 2**64 - 1

# One message of a partition: (partition, body, first seq, last seq, events).
Packed = tuple[int, bytes, int, int, int]


def partition_of(instrument: str, partitions: int) -> int:
    """The partition of an instrument: a stable hash (the same on every machine and run)."""
    return zlib.crc32(instrument.encode()) % partitions


def _event_record(e: Event) -> bytes:
    inst, oid = e.instrument.encode(), e.order_id.encode()
    if isinstance(e.time, int):
        time_ns, time = e.time, b""
    else:
        time_ns, time = -1, e.time.encode()
    head = EVENT.pack(e.seq, e.price, e.qty, e.line, time_ns, e.action, e.side, int(e.last),
                      len(inst), len(oid), len(time))  # fmt: skip
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
    events: Iterable[Event], partitions: int, last_seq: Sequence[int], max_body: int
) -> tuple[list[Packed], int]:
    """Events (in seq order) as message bodies per partition, in partition order, each at most
    ``max_body`` bytes; an event at or below its partition's ``last_seq`` (-1: none) is left
    out. Returns the messages and how many events were left out."""
    by_partition: dict[int, list[Event]] = {}
    skipped = 0
    for e in events:
        p = partition_of(e.instrument, partitions)
        if e.seq <= last_seq[p]:
            skipped += 1
            continue
        by_partition.setdefault(p, []).append(e)
    out: list[Packed] = []
    for p in sorted(by_partition):
        part = by_partition[p]
        records = [_event_record(e) for e in part]
        for start, end in _bodies(records, EVENTS_MAGIC, max_body):
            body = EVENTS_MAGIC + b"".join(records[start:end])
            out.append((p, body, part[start].seq, part[end - 1].seq, end - start))
    return out, skipped


def unpack_events(body: bytes) -> list[Event]:
    """The events of a message body.

    :raises ValueError: the body is not a batch of events (a malformed message).
    """
    if body[:4] != EVENTS_MAGIC:
        raise ValueError("not an event batch (no L3E1 mark)")
    events: list[Event] = []
    at, end = 4, len(body)
    while at < end:
        if end - at < EVENT.size:
            raise ValueError(f"event {len(events)} is cut short")
        seq, price, qty, line, time_ns, action, side, last, n_inst, n_oid, n_time = (
            EVENT.unpack_from(body, at)
        )
        at += EVENT.size
        if at + n_inst + n_oid + n_time > end:
            raise ValueError(f"event {len(events)} is cut short")
        if action > 6 or side > 1 or last > 1 or time_ns < -1 or (time_ns >= 0 and n_time):
            raise ValueError(f"event {len(events)} has a field out of range")
        inst = body[at : at + n_inst].decode()
        at += n_inst
        oid = body[at : at + n_oid].decode()
        at += n_oid
        time: str | int = time_ns if time_ns >= 0 else body[at : at + n_time].decode()
        at += n_time
        events.append(Event(seq, action, inst, oid, side, price, qty, time, line, "", last == 1))
    return events


def _quote_record(q: Quote) -> bytes:
    inst = q.instrument.encode()
    if isinstance(q.time, int):
        time_ns, time = q.time, b""
    else:
        time_ns, time = -1, q.time.encode()
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
    if body[:4] != QUOTES_MAGIC:
        raise ValueError("not a quote batch (no L1Q1 mark)")
    quotes: list[Quote] = []
    at, end = 4, len(body)
    while at < end:
        if end - at < QUOTE.size:
            raise ValueError(f"quote {len(quotes)} is cut short")
        bid, ask, bid_size, ask_size, time_ns, seq, n_inst, n_time = QUOTE.unpack_from(body, at)
        at += QUOTE.size
        if at + n_inst + n_time > end:
            raise ValueError(f"quote {len(quotes)} is cut short")
        if time_ns < -1 or (time_ns >= 0 and n_time):
            raise ValueError(f"quote {len(quotes)} has a field out of range")
        inst = body[at : at + n_inst].decode()
        at += n_inst
        time: str | int = time_ns if time_ns >= 0 else body[at : at + n_time].decode()
        at += n_time
        quotes.append(Quote(time, inst, bid, ask, bid_size, ask_size, seq))
    return quotes
