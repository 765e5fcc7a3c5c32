"""What a worker cannot know from its partition alone (SPEC §13, §14): the publisher's marks.

A schema's rows (`core.schemas.Depths`) depend on two things of the whole feed, not of one
partition's instruments:

- a gap the resequencer declared (SPEC §5): every instrument's next row gets flag 4;
- for ``bbo-1s``/``bbo-1m``, the feed's clock: an interval's rows are written once an event of
  any instrument at or past its end is applied.

So the publisher sends every partition, in order with its events, a mark where either happened:
``gap`` before the event that follows a gap, ``clock`` before each event that moves the feed's
clock into a later interval (with that interval's index). A mark has a *place*, the place of
the event it comes before (its seq; Databento's records: their index in the input), and travels
in the ``L3tol1-Marks`` header of the partition's next L3 message (one without events when the
partition has none to send), whose ``L3tol1-Last-Seq`` covers it: the publisher's exactly-once
rule (skip what a partition holds, by place) and ``Nats-Msg-Id`` serve marks as they serve
events. The end of the input is the existing end mark (`Depths.finish`).

Marks of one kind that follow each other with no event of the partition between them are one
mark, the last (two gaps flag the next rows as one does; the clock's first move writes the
pending rows, the next ones find none): a partition gets at most a few marks per event of its
own, however sparse its instruments. A clock mark names the interval of an event the feed
really applies at that place: one sent again or needlessly (a publisher that resumed mid-input,
with no clock yet) changes nothing, for the event itself moves the clock as far. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any, NamedTuple

from l3tol1.core.records import Event
from l3tol1.core.schemas import Depths, Row, TimeNs
from l3tol1.core.wire import partition_of

__all__ = ["CLOCK", "GAP", "Mark", "MarkMaker", "apply_marked", "decode_marks", "encode_marks"]

GAP = "g"
CLOCK = "c"
_MAX_PLACE = 2**64 - 1
_MAX_INTERVAL = 2**63 - 1


class Mark(NamedTuple):
    """Before the partition's first event at or after ``place``: a gap, or the feed's clock
    in interval ``interval`` (its index: ts_recv // the schema's interval)."""

    place: int
    kind: str  # GAP or CLOCK
    interval: int = 0


def encode_marks(marks: Iterable[Mark]) -> str:
    """Marks (in place order, clocks in interval order) as header text, each place and clock
    interval as the difference from the previous one (the first from 0), comma-separated:
    ``<place>g`` or ``<place>c<interval>``. Compact: NATS caps a message's headers at 64 KiB."""
    out = []
    place = interval = 0
    for m in marks:
        if m.kind == CLOCK:
            out.append(f"{m.place - place}{CLOCK}{m.interval - interval}")
            interval = m.interval
        else:
            out.append(f"{m.place - place}{GAP}")
        place = m.place
    return ",".join(out)


def decode_marks(text: str) -> list[Mark]:
    """The marks `encode_marks` wrote.

    :raises ValueError: anything else (an unknown kind, a number out of range, out of order).
    """
    marks: list[Mark] = []
    place = interval = 0
    for item in text.split(","):
        for kind in (GAP, CLOCK):
            step, found, rest = item.partition(kind)
            if found:
                break
        else:
            raise ValueError(f"not a mark: {item!r:.40}")
        if not _plain(step) or (kind == GAP and rest) or (kind == CLOCK and not _plain(rest)):
            raise ValueError(f"not a mark: {item!r:.40}")
        place += int(step)
        if kind == CLOCK:
            interval += int(rest)
        if place > _MAX_PLACE or interval > _MAX_INTERVAL:
            raise ValueError(f"a mark out of range: {item!r:.40}")
        marks.append(Mark(place, kind, interval if kind == CLOCK else 0))
    return marks


def _plain(text: str) -> bool:
    return text.isascii() and text.isdigit() and (text == "0" or text[0] != "0")


class MarkMaker:
    """The publisher's side: each partition's marks among a batch of ordered events.

    :param interval: the schema's sampling interval in ns (0: no clock marks).
    :param partitions: the feed's partition count.
    """

    def __init__(self, interval: int, partitions: int) -> None:
        self.interval = interval
        self.partitions = partitions
        self.current: int | None = None  # the feed's interval so far (as far as seen)
        self._ns = TimeNs()
        self._partition: dict[str, int] = {}

    def marks(
        self, events: Iterable[Event], gaps: Collection[int], *, by_line: bool
    ) -> list[list[Mark]]:
        """Per partition, its marks among ``events`` (in order), ``gaps`` being the places
        before which the resequencer declared a gap; a gap's before a clock's at one place."""
        out: list[list[Mark]] = [[] for _ in range(self.partitions)]
        if not (self.interval or gaps):
            return out
        interval, ns, current = self.interval, self._ns, self.current
        runs: list[list[Mark]] = [[] for _ in range(self.partitions)]  # since its last event
        partition_of_name = self._partition
        for event in events:
            place = event.line if by_line else event.seq
            new = []
            if gaps and place in gaps:
                new.append(Mark(place, GAP))
            if interval:
                k = ns(event.time) // interval
                if current is None or k > current:
                    current = k
                    new.append(Mark(place, CLOCK, k))
            if new:
                for run in runs:
                    for mark in new:
                        if run and run[-1].kind == mark.kind:
                            run[-1] = mark  # one mark for the run (see the module's docstring)
                        else:
                            run.append(mark)
            p = partition_of_name.get(event.instrument)
            if p is None:
                p = partition_of_name[event.instrument] = partition_of(
                    event.instrument, self.partitions
                )
            if runs[p]:
                out[p] += runs[p]
                runs[p] = []
        self.current = current
        for p, run in enumerate(runs):
            out[p] += run
        return out


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
            depths.advance(mark.interval * depths.schema.interval, rows)
    if i < n:
        depths.apply(items[i:], rows, anomalies)
