"""What travels through JetStream between the roles (SPEC §13): names, headers, message bodies.

Pure: no I/O, no NATS import. Three subjects per partition of a feed:

    <prefix>.l3.<feed>.<p>     ordered L3 events (publish -> work), stream <prefix>-<feed>-l3
    <prefix>.l1.<feed>.<p>     L1 quotes (work -> collect),          stream <prefix>-<feed>-l1
    <prefix>.state.<feed>.<p>  the owner's checkpoint (books and the last L3 message applied),
                               in the L1 stream, so that it commits atomically with the rows

A message body is a JSON array of records (events or quotes) as arrays: compact, and decoded by
the C JSON module. An end-of-feed mark is a message with the `END` header and no body.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from l3tol1.core.records import Event, Quote

__all__ = ["Names", "decode_events", "decode_quotes", "encode_events", "encode_quotes"]

T = TypeVar("T")

# Headers of our own (NATS's are Nats-*).
LAST_SEQ = "L3tol1-Last-Seq"  # the feed seq of the last event in an L3 message
LAYOUT = "L3tol1-Layout"  # "1,0": whether rows have an instrument column, ns times
END = "L3tol1-End"  # an end-of-feed mark (its value: the partition count)
STATE_PART = "L3tol1-State-Part"  # "i/n": one of the n messages of a worker's state
# A message stays well under NATS's default max_payload (1 MiB).
MAX_BODY = 512 * 1024


@dataclass(frozen=True, slots=True)
class Names:
    """The stream and subject names of one feed."""

    prefix: str
    feed: str

    @property
    def l3_stream(self) -> str:
        return f"{self.prefix}-{self.feed}-l3"

    @property
    def l1_stream(self) -> str:
        return f"{self.prefix}-{self.feed}-l1"

    def l3(self, partition: int | str) -> str:
        return f"{self.prefix}.l3.{self.feed}.{partition}"

    def l1(self, partition: int | str) -> str:
        return f"{self.prefix}.l1.{self.feed}.{partition}"

    def state(self, partition: int | str) -> str:
        return f"{self.prefix}.state.{self.feed}.{partition}"

    def consumer(self, partition: int) -> str:
        return f"work-{partition}"


def partition_of(instrument: str, partitions: int) -> int:
    """The partition of an instrument: a stable hash (the same on every machine and run)."""
    return zlib.crc32(instrument.encode()) % partitions


def encode_layout(layout: tuple[bool, bool]) -> str:
    return f"{int(layout[0])},{int(layout[1])}"


def decode_layout(text: str) -> tuple[bool, bool]:
    a, b = text.split(",")
    return a == "1", b == "1"


def encode_events(events: Iterable[Event]) -> bytes:
    """Events as a message body (the raw line is not sent: a worker never rejects)."""
    return json.dumps(
        [[e.seq, e.action, e.instrument, e.order_id, e.side, e.price, e.qty, e.time, e.line,
          e.last] for e in events],
        separators=(",", ":"),
    ).encode()  # fmt: skip


def decode_events(body: bytes) -> list[Event]:
    """The events of a message body.

    :raises ValueError: the body is not a list of events (a malformed message).
    """
    rows = json.loads(body)
    if not isinstance(rows, list):
        raise ValueError("not a list of events")
    events = []
    for row in rows:
        seq, action, instrument, order_id, side, price, qty, time, line, last = row
        if not (
            type(seq) is int
            and type(action) is int
            and 0 <= action <= 6
            and type(side) is int
            and side in (0, 1)
            and type(price) is int
            and type(qty) is int
            and type(instrument) is str
            and type(order_id) is str
            and type(time) in (str, int)
            and type(line) is int
            and type(last) is bool
        ):
            raise ValueError(f"not an event: {row!r:.200}")
        events.append(
            Event(seq, action, instrument, order_id, side, price, qty, time, line, "", last)
        )
    return events


def encode_quotes(quotes: Iterable[Quote]) -> bytes:
    return json.dumps([list(q) for q in quotes], separators=(",", ":")).encode()


def decode_quotes(body: bytes) -> list[Quote]:
    return [Quote(*row) for row in json.loads(body)]


def split_body(items: list[T], encode: Callable[[list[T]], bytes]) -> list[tuple[bytes, list[T]]]:
    """``items`` in order as bodies of at most about `MAX_BODY` bytes, each with its items."""
    out: list[tuple[bytes, list[T]]] = []
    step = max(1, len(items))
    start = 0
    while start < len(items):
        chunk = items[start : start + step]
        body = encode(chunk)
        if len(body) > MAX_BODY and step > 1:
            step = max(1, step // 2)
            continue
        out.append((body, chunk))
        start += step
    return out
