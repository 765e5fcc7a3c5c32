"""The feed (resequencer) against "sort what arrived" (SPEC §5). Time is passed in: no sleeps."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from l3tol1.core.feed import Feed
from tests.model import ev as event


def ev(seq: int, line: int | None = None):  # type: ignore[no-untyped-def]
    return event(seq, line=line)


def seqs(events: list) -> list[int]:
    return [e.seq for e in events]


def displace(n: int, window: int, rng: random.Random, base: int = 1000) -> list[int]:
    """0..n-1 shuffled so that no item moves more than ``window`` places."""
    keys = sorted(range(n), key=lambda i: i + rng.uniform(0, window))
    return [base + k for k in keys]


def run(order: list[int], *, batch: int = 7, **kw: object) -> tuple[list[int], list, Feed]:
    r = Feed(**kw)  # type: ignore[arg-type]
    ready: list = []
    rejects: list = []
    for i in range(0, len(order), batch):
        r.push([ev(s) for s in order[i : i + batch]], 0.0, ready, rejects)
    r.finish(ready)
    return seqs(ready), rejects, r


class TestOrdering:
    @settings(max_examples=200)
    @given(
        st.integers(min_value=0, max_value=300),
        st.integers(min_value=0, max_value=60),
        st.integers(min_value=1, max_value=50),
        st.randoms(use_true_random=False),
    )
    def test_permutation_within_window_gives_sorted_output(
        self, n: int, window: int, batch: int, rng: random.Random
    ) -> None:
        """Any displacement within the window, cut into any batches, comes out sorted."""
        order = displace(n, window, rng)
        out, rejects, r = run(order, batch=batch, max_pending=window + 1)
        assert out == sorted(order)
        assert rejects == []
        assert r.gaps_skipped == 0

    def test_contiguous_events_are_forwarded_at_once(self) -> None:
        """In-order events do not wait."""
        r = Feed(start_seq=5)
        ready: list = []
        r.push([ev(5), ev(6), ev(8)], 0.0, ready, [])
        assert seqs(ready) == [5, 6]
        assert r.pending == 1
        r.push([ev(7)], 0.0, ready, [])
        assert seqs(ready) == [5, 6, 7, 8]

    def test_output_does_not_depend_on_batching(self) -> None:
        """One event per batch or all at once: the same output, the same skips."""
        rng = random.Random(7)
        order = [s for s in displace(3000, 80, rng) if s % 97]  # with gaps
        one, _, r1 = run(order, batch=1, max_pending=50)
        many, _, r2 = run(order, batch=1000, max_pending=50)
        assert one == many
        assert r1.gaps_skipped == r2.gaps_skipped > 0


class TestStartupWindow:
    def test_lowest_seq_of_window_starts_at_end_of_input(self) -> None:
        """Without --start-seq and a clock, the window closes at end of input."""
        out, _, r = run([12, 10, 11, 14, 13])
        assert out == [10, 11, 12, 13, 14]
        assert r.first_seq == 10

    def test_window_closes_on_max_pending(self) -> None:
        """More than max_pending waiting closes the window; earlier seqs are then late."""
        r = Feed(max_pending=3)
        ready: list = []
        rejects: list = []
        r.push([ev(20), ev(22), ev(21), ev(23)], 0.0, ready, rejects)
        assert seqs(ready) == [20, 21, 22, 23]
        r.push([ev(19)], 0.0, ready, rejects)
        assert [x.reason for x in rejects] == ["late"]

    def test_window_closes_on_timeout_when_following(self) -> None:
        """With a clock, the window closes gap_timeout after the first event arrived."""
        r = Feed(gap_timeout=2.0)
        ready: list = []
        r.push([ev(11), ev(10)], 100.0, ready, [])
        assert ready == [] and r.deadline() == 102.0
        r.expire(101.9, ready)
        assert ready == []
        r.expire(102.0, ready)
        assert seqs(ready) == [10, 11]

    def test_start_seq_given(self) -> None:
        """--start-seq: lower seqs are late, the first one is awaited."""
        out, rejects, _ = run([4, 6, 5], start_seq=5)
        assert out == [5, 6]
        assert [(x.line, x.reason) for x in rejects] == [(4, "late")]


class TestGaps:
    def test_gap_skipped_after_timeout_with_its_range(self) -> None:
        """A gap older than gap_timeout is declared lost, its range reported."""
        r = Feed(start_seq=1, gap_timeout=2.0)
        ready: list = []
        r.push([ev(1), ev(4), ev(5)], 10.0, ready, [])
        assert seqs(ready) == [1]
        r.expire(11.99, ready)
        assert seqs(ready) == [1]
        r.expire(12.0, ready)
        assert seqs(ready) == [1, 4, 5]
        assert r.skipped == [(2, 3)]
        assert (r.gaps_skipped, r.seqs_lost) == (1, 2)

    def test_second_gap_times_from_when_it_was_first_missed(self) -> None:
        """After a skip, the next gap's clock started when its later events arrived."""
        r = Feed(start_seq=1, gap_timeout=2.0)
        ready: list = []
        r.push([ev(1), ev(3)], 0.0, ready, [])
        r.push([ev(5)], 1.0, ready, [])
        r.expire(2.0, ready)  # gap 2 skipped; gap 4 was first missed at t=1.0
        assert seqs(ready) == [1, 3]
        assert r.deadline() == 3.0
        r.expire(3.0, ready)
        assert seqs(ready) == [1, 3, 5]
        assert r.skipped == [(2, 2), (4, 4)]

    def test_no_clock_means_no_timeout(self) -> None:
        """Without --follow only max_pending and end of input skip a gap."""
        r = Feed(start_seq=1, max_pending=10)
        ready: list = []
        r.push([ev(1), ev(3)], 0.0, ready, [])
        assert r.deadline() is None
        r.expire(1e9, ready)
        assert seqs(ready) == [1]
        r.finish(ready)
        assert seqs(ready) == [1, 3]

    def test_max_pending_bounds_memory(self) -> None:
        """Never more than max_pending events wait, whatever arrives."""
        r = Feed(start_seq=0, max_pending=100)
        ready: list = []
        rng = random.Random(3)
        for _ in range(200):
            r.push([ev(rng.randrange(1, 100_000)) for _ in range(50)], 0.0, ready, [])
            assert r.pending <= 100
        assert seqs(ready) == sorted(seqs(ready))
        assert len(r._arrivals) == 0  # no clock, no arrival log


class TestLateAndDuplicate:
    def test_late_and_duplicate_rows_are_rejected_with_their_line(self) -> None:
        """A passed-over seq is late; one seen before (waiting or applied) is duplicate."""
        r = Feed(start_seq=10, max_pending=1)
        ready: list = []
        rejects: list = []
        r.push([ev(10, 2), ev(10, 3), ev(13, 4), ev(13, 5), ev(14, 6)], 0.0, ready, rejects)
        # 14 made two wait (> max_pending): 11..12 skipped
        r.push([ev(11, 7), ev(13, 8)], 0.0, ready, rejects)
        assert seqs(ready) == [10, 13, 14]
        assert [(x.line, x.reason, x.raw) for x in rejects] == [
            (3, "duplicate", "raw10"),
            (5, "duplicate", "raw13"),
            (7, "late", "raw11"),
            (8, "duplicate", "raw13"),
        ]
        assert (r.late, r.duplicate) == (1, 3)

    def test_snapshot_restore_round_trip(self) -> None:
        """A restored feed continues exactly like the original."""
        r = Feed(start_seq=1, max_pending=100)
        ready: list = []
        r.push([ev(s) for s in (1, 2, 5, 7, 9)], 0.0, ready, [])
        copy = Feed(max_pending=100)
        copy.restore(r.snapshot(), 0.0)
        tail = [ev(s) for s in (3, 4, 6, 8)]
        a: list = []
        b: list = []
        r.push(tail, 0.0, a, [])
        copy.push(tail, 0.0, b, [])
        assert seqs(a) == seqs(b) == [3, 4, 5, 6, 7, 8, 9]


class TestStateCheck:
    def test_consistent_snapshot_passes(self) -> None:
        """A snapshot the feed took itself has no inconsistency."""
        r = Feed(start_seq=1, max_pending=2)
        r.push([ev(s) for s in (1, 2, 5, 7, 9, 20)], 0.0, [], [])
        assert r.snapshot().check() is None

    def test_waiting_seq_not_after_next_expected_is_refused(self) -> None:
        """A waiting seq at or below the next expected one would never be released."""
        r = Feed(start_seq=1)
        r.push([ev(1), ev(5)], 0.0, [], [])
        state = r.snapshot()
        state.next_seq = 9
        assert state.check() == "waiting seq 5 is not after the next expected seq 9"
