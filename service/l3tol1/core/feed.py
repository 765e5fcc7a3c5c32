"""Put one input's events back in seq order: SPEC §5.

`Feed` is synchronous and has no clock of its own: callers pass ``now`` (seconds, any monotonic
origin). Without a gap timeout (``--no-follow``) time plays no part at all, so a file's output
never depends on timing, nor on how its rows were cut into batches.

Rules, in one place:
- the event with the expected seq is released at once, with every waiting event that follows it;
- a later seq waits (in a heap keyed on seq);
- a gap is declared lost, and the feed moves on to the lowest waiting seq, when more than
  ``max_pending`` events wait, when the gap is older than ``gap_timeout`` (if one is set), or at
  end of input (`finish`);
- until ``start_seq`` is known, every event waits (the start-up window); the window closes under
  the same rules as a gap and the lowest waiting seq becomes the first expected one;
- a seq that was already passed is rejected as ``late`` if it was never seen (before the first
  seq, or inside a gap declared lost), as ``duplicate`` if it was applied or is waiting.

The seq is the feed's, over all instruments (SPEC §9): one `Feed` per input.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from dataclasses import dataclass, field
from heapq import heapify, heappop, heappush
from typing import Any

from l3tol1.core.numbers import MAX_SEQ
from l3tol1.core.plain import PlainReader, natural
from l3tol1.core.records import Event, Reason, Reject, events_from_plain, events_to_plain

__all__ = ["Feed", "FeedState"]

_COUNTERS = ("received", "late", "duplicate", "gaps_skipped", "seqs_lost")

# How many skipped gap ranges are remembered to tell `late` from `duplicate`; older ones are
# forgotten and a row in them is called `duplicate` (it is rejected either way).
_GAP_MEMORY = 100_000


@dataclass(slots=True)
class FeedState:
    """A `Feed` as plain data, for the checkpoint. Waiting events are kept without their raw
    line: a waiting event is only ever released, never rejected."""

    next_seq: int | None
    first_seq: int | None
    gaps: list[tuple[int, int]] = field(default_factory=list)
    pending: list[Event] = field(default_factory=list)
    received: int = 0
    late: int = 0
    duplicate: int = 0
    gaps_skipped: int = 0
    seqs_lost: int = 0

    def to_plain(self) -> dict[str, Any]:
        """This state as plain data (a checkpoint's ``feed``)."""
        return {
            "next_seq": self.next_seq,
            "first_seq": self.first_seq,
            "gaps": self.gaps,
            "pending": events_to_plain(self.pending),
            "counters": {name: getattr(self, name) for name in _COUNTERS},
        }

    @classmethod
    def from_plain(cls, obj: Any, where: str, read: PlainReader) -> FeedState:
        """The state `to_plain` gave, checked whole (`check` included).

        :raises PlainDataError: a value is missing, of the wrong type, or inconsistent.
        """
        gaps = read.items(
            obj,
            "gaps",
            where,
            lambda g: isinstance(g, list) and len(g) == 2 and all(natural(x) for x in g),
        )
        counters = read.get(obj, "counters", where)
        state = cls(
            # 2^64 once seq 2^64 - 1 was passed: every seq is behind then
            next_seq=read.integer(obj, "next_seq", where, hi=MAX_SEQ + 1, null=True),
            first_seq=read.integer(obj, "first_seq", where, null=True),
            gaps=[(g[0], g[1]) for g in gaps],
            pending=events_from_plain(obj, "pending", where, read),
            **{name: read.integer(counters, name, f"{where}.counters") for name in _COUNTERS},
        )
        problem = state.check()
        if problem is not None:
            read.fail(where, problem)
        return state

    def check(self) -> str | None:
        """What is inconsistent in this state, or None: waiting events must lie after the next
        expected seq, with distinct seqs; gaps must be ordered ranges."""
        seqs = [event.seq for event in self.pending]
        if len(set(seqs)) != len(seqs):
            return "a waiting seq appears twice"
        if self.next_seq is not None and seqs and min(seqs) <= self.next_seq:
            return f"waiting seq {min(seqs)} is not after the next expected seq {self.next_seq}"
        if (self.next_seq is None) != (self.first_seq is None):
            return "next_seq and first_seq must both be set or both be null"
        previous = -1
        for first, last in self.gaps:
            if not previous < first <= last:
                return f"gap {first}-{last} is out of order"
            previous = last
        return None


class Feed:
    """Reorders events by seq with bounded memory.

    :param start_seq: the first expected seq; None opens a start-up window.
    :param max_pending: more waiting events than this skips the oldest gap.
    :param gap_timeout: seconds a gap may stay open; None disables the clock (batch mode).
    """

    def __init__(
        self,
        *,
        start_seq: int | None = None,
        max_pending: int = 100_000,
        gap_timeout: float | None = None,
    ) -> None:
        self.next_seq = start_seq
        self.max_pending = max_pending
        self.gap_timeout = gap_timeout
        self._heap: list[int] = []
        self._pending: dict[int, Event] = {}
        # (arrival time, seq) of waiting events in arrival order; the first entry still waiting
        # tells when the current gap was first missed. Drained entries are dropped lazily.
        self._arrivals: deque[tuple[float, int]] = deque()
        # Seqs below first_seq and inside skipped ranges were never seen: a row for one is late.
        self.first_seq = start_seq
        self._gap_starts: list[int] = []
        self._gap_ends: list[int] = []
        self.skipped: list[tuple[int, int]] = []  # gaps skipped since the caller last cleared it
        self.received = 0
        self.late = 0
        self.duplicate = 0
        self.gaps_skipped = 0
        self.seqs_lost = 0

    @property
    def arrivals(self) -> int:
        """How many arrival times are logged for the gap timeout (none without a clock)."""
        return len(self._arrivals)

    @property
    def pending(self) -> int:
        """How many events are waiting."""
        return len(self._pending)

    def push(
        self, events: list[Event], now: float, ready: list[Event], rejects: list[Reject]
    ) -> None:
        """Take a batch of events in arrival order.

        Events that can go on are appended to ``ready`` in seq order; late and duplicate rows
        to ``rejects``.
        """
        pending = self._pending
        heap = self._heap
        timed = self.gap_timeout is not None
        self.received += len(events)
        # The common case (the expected seq, then whatever waited behind it) runs on locals;
        # self.next_seq is written back before anything that reads it.
        expected = self.next_seq
        release = ready.append
        for event in events:
            seq = event[0]
            if seq == expected:
                release(event)
                expected += 1
                while heap and heap[0] == expected:
                    heappop(heap)
                    release(pending.pop(expected))
                    expected += 1
            elif expected is not None and seq < expected:
                if self._was_skipped(seq):
                    self.late += 1
                    rejects.append(Reject(event.line, Reason.LATE, event.raw))
                else:
                    self.duplicate += 1
                    rejects.append(Reject(event.line, Reason.DUPLICATE, event.raw))
            elif seq in pending:
                self.duplicate += 1
                rejects.append(Reject(event.line, Reason.DUPLICATE, event.raw))
            else:
                pending[seq] = event
                heappush(heap, seq)
                if timed:
                    self._arrivals.append((now, seq))
                if len(pending) > self.max_pending:
                    self.next_seq = expected
                    self._skip_gap(ready)
                    expected = self.next_seq
        self.next_seq = expected
        if timed:
            self._compact_arrivals()
            self.expire(now, ready)

    def expire(self, now: float, ready: list[Event]) -> None:
        """Skip every gap (or close the start-up window) whose timeout has passed by ``now``."""
        while True:
            deadline = self.deadline()
            if deadline is None or deadline > now:
                return
            self._skip_gap(ready)

    def deadline(self) -> float | None:
        """When the current gap times out, or None if nothing waits or there is no clock."""
        if self.gap_timeout is None or not self._pending:
            return None
        arrivals = self._arrivals
        pending = self._pending
        while arrivals[0][1] not in pending:
            arrivals.popleft()
        return arrivals[0][0] + self.gap_timeout

    def finish(self, ready: list[Event]) -> None:
        """End of input: no row can still arrive, so release everything, skipping the gaps."""
        while self._pending:
            self._skip_gap(ready)

    def _drain(self, ready: list[Event]) -> None:
        heap = self._heap
        pending = self._pending
        expected = self.next_seq
        assert expected is not None
        while heap and heap[0] == expected:
            heappop(heap)
            ready.append(pending.pop(expected))
            expected += 1
        self.next_seq = expected

    def _compact_arrivals(self) -> None:
        """Keep the arrival log proportional to what waits, whatever the input's size."""
        if len(self._arrivals) > 2 * len(self._pending) + 1024:
            pending = self._pending
            self._arrivals = deque(a for a in self._arrivals if a[1] in pending)

    def _skip_gap(self, ready: list[Event]) -> None:
        """Move on to the lowest waiting seq, declaring the seqs before it lost."""
        lowest = self._heap[0]
        if self.next_seq is None:  # the start-up window closes
            self.next_seq = self.first_seq = lowest
        elif lowest > self.next_seq:
            first, last = self.next_seq, lowest - 1
            self.skipped.append((first, last))
            self.gaps_skipped += 1
            self.seqs_lost += last - first + 1
            self._remember_gap(first, last)
            self.next_seq = lowest
        self._drain(ready)

    def _remember_gap(self, first: int, last: int) -> None:
        self._gap_starts.append(first)
        self._gap_ends.append(last)
        if len(self._gap_starts) > _GAP_MEMORY:
            del self._gap_starts[: _GAP_MEMORY // 2]
            del self._gap_ends[: _GAP_MEMORY // 2]

    def _was_skipped(self, seq: int) -> bool:
        if self.first_seq is None or seq < self.first_seq:
            return True
        i = bisect_right(self._gap_starts, seq) - 1
        return i >= 0 and seq <= self._gap_ends[i]

    # -- checkpointing -------------------------------------------------------------------------

    def snapshot(self) -> FeedState:
        """The feed as plain data, waiting events included (in seq order, without raw lines)."""
        return FeedState(
            next_seq=self.next_seq,
            first_seq=self.first_seq,
            gaps=list(zip(self._gap_starts, self._gap_ends, strict=True)),
            pending=[self._pending[seq]._replace(raw="") for seq in sorted(self._pending)],
            received=self.received,
            late=self.late,
            duplicate=self.duplicate,
            gaps_skipped=self.gaps_skipped,
            seqs_lost=self.seqs_lost,
        )

    def restore(self, state: FeedState, now: float) -> None:
        """Load a `snapshot`; waiting events count as having arrived at ``now``."""
        self.next_seq = state.next_seq
        self.first_seq = state.first_seq
        self._pending = {event.seq: event for event in state.pending}
        self._heap = list(self._pending)
        heapify(self._heap)
        self._arrivals = deque()
        if self.gap_timeout is not None:
            self._arrivals.extend((now, seq) for seq in self._heap)
        self._gap_starts = [first for first, _ in state.gaps]
        self._gap_ends = [last for _, last in state.gaps]
        self.received = state.received
        self.late = state.late
        self.duplicate = state.duplicate
        self.gaps_skipped = state.gaps_skipped
        self.seqs_lost = state.seqs_lost
