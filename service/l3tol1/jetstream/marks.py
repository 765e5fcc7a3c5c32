"""What a worker cannot know from its partition alone (SPEC §13, §14): the publisher's marks.

A schema's rows (`core.schemas.Depths`) depend on two things of the whole feed, not of one
partition's instruments:

- a gap the resequencer declared (SPEC §5): every instrument's next row gets flag 4;
- for ``bbo-1s``/``bbo-1m``, the feed's clock: an interval's rows are written once an event of
  any instrument at or past its end is applied.

So the publisher sends every partition, in order with its events, a mark where either happened:
``gap`` before the event that follows a gap, ``clock`` before each event that moves the feed's
clock into a later interval (with that event's ``ts_recv``). A mark has a *place*, the place of
the event it comes before (its seq; Databento's records: their index in the input), and travels
in the ``L3tol1-Marks`` header of the partition's next L3 message (one without events when the
partition has none to send), whose ``L3tol1-Last-Seq`` covers it: the publisher's exactly-once
rule (skip what a partition holds, by place) and ``Nats-Msg-Id`` serve marks as they serve
events. The end of the input is the existing end mark (`Depths.finish`).

A clock mark carries the ts_recv of an event the feed really applies at that place: one sent
again or sent needlessly (a publisher that resumed mid-input, with no clock yet) changes nothing,
for the event itself moves the clock as far. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any, NamedTuple

from l3tol1.core.records import Event
from l3tol1.core.schemas import Depths, Row, TimeNs

__all__ = ["CLOCK", "GAP", "Mark", "MarkMaker", "apply_marked", "decode_marks", "encode_marks"]

GAP = "g"
CLOCK = "c"
_MAX_PLACE = 2**64 - 1
_MAX_TS = 2**63 - 1


class Mark(NamedTuple):
    """Before the partition's first event at or after ``place``: a gap, or the feed's clock
    at ``ts`` (ns)."""

    place: int
    kind: str  # GAP or CLOCK
    ts: int = 0


def encode_marks(marks: Iterable[Mark]) -> str:
    """Marks as header text: ``<place>g`` or ``<place>c<ts>``, comma-separated, in order."""
    return ",".join(f"{m.place}{m.kind}{m.ts}" if m.kind == CLOCK else f"{m.place}{GAP}"
                    for m in marks)  # fmt: skip


def decode_marks(text: str) -> list[Mark]:
    """The marks `encode_marks` wrote, in place order.

    :raises ValueError: anything else (an unknown kind, a number out of range, out of order).
    """
    marks: list[Mark] = []
    for item in text.split(","):
        for kind in (GAP, CLOCK):
            place, found, ts = item.partition(kind)
            if found:
                break
        else:
            raise ValueError(f"not a mark: {item!r:.40}")
        if not (_plain(place) and int(place) <= _MAX_PLACE):
            raise ValueError(f"not a mark: {item!r:.40}")
        if kind == GAP and ts:
            raise ValueError(f"not a mark: {item!r:.40}")
        if kind == CLOCK and not (_plain(ts) and int(ts) <= _MAX_TS):
            raise ValueError(f"not a mark: {item!r:.40}")
        mark = Mark(int(place), kind, int(ts) if kind == CLOCK else 0)
        if marks and mark.place < marks[-1].place:
            raise ValueError("marks out of order")
        marks.append(mark)
    return marks


def _plain(text: str) -> bool:
    return text.isascii() and text.isdigit() and (text == "0" or text[0] != "0")


class MarkMaker:
    """The publisher's side: the marks of each batch of ordered events.

    :param interval: the schema's sampling interval in ns (0: no clock marks).
    """

    def __init__(self, interval: int) -> None:
        self.interval = interval
        self.current: int | None = None  # the feed's interval so far (as far as seen)
        self._ns = TimeNs()

    def marks(self, events: Iterable[Event], gaps: Collection[int], *, by_line: bool) -> list[Mark]:
        """The marks among ``events`` (in order), ``gaps`` being the places before which the
        resequencer declared a gap; a gap's before a clock's at one place."""
        out = [Mark(g, GAP) for g in sorted(gaps)]
        if not self.interval:
            return out
        interval, ns, current = self.interval, self._ns, self.current
        clocks = []
        for event in events:
            ts = ns(event.time)
            k = ts // interval
            if current is None or k > current:
                current = k
                clocks.append(Mark(event.line if by_line else event.seq, CLOCK, ts))
        self.current = current
        if not out:
            return clocks
        return sorted(out + clocks, key=lambda m: (m.place, m.kind != GAP))


def apply_marked(
    depths: Depths,
    events: Sequence[Event],
    marks: Sequence[Mark],
    rows: list[Row],
    anomalies: list[tuple[str, Event]],
    *,
    by_line: bool,
) -> None:
    """The worker's side: a partition's events applied with the marks in their places, as the
    file job applies the whole feed (SPEC §14)."""
    if not marks:
        depths.apply(events, rows, anomalies)
        return
    items: Any = events if isinstance(events, list) else list(events)
    i, n = 0, len(items)
    for mark in marks:
        j = i
        while j < n and (items[j].line if by_line else items[j].seq) < mark.place:
            j += 1
        if j > i:
            depths.apply(items[i:j], rows, anomalies)
            i = j
        if mark.kind == GAP:
            depths.mark_gap()
        else:
            depths.advance(mark.ts, rows)
    if i < n:
        depths.apply(items[i:], rows, anomalies)
