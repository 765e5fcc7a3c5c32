"""The feed (resequencer) against "sort what arrived" (SPEC §5), on each core. Time is passed in."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.model import SELL, TRADE
from tests.model import ev as event


def ev(seq: int, line: int | None = None):  # type: ignore[no-untyped-def]
    return event(seq, line=line)


def seqs(events: Any) -> list[int]:
    return [e.seq for e in events]


def displace(n: int, window: int, rng: random.Random, base: int = 1000) -> list[int]:
    """0..n-1 shuffled so that no item moves more than ``window`` places."""
    keys = sorted(range(n), key=lambda i: i + rng.uniform(0, window))
    return [base + k for k in keys]


class Driver:
    """One core's feed, given lists of events; what it released, in the core's own container."""

    def __init__(self, core: Any, **kwargs: object) -> None:
        self.core = core
        self.feed = core.feed(**kwargs)
        self.released = core.events()
        self.rejects: list = []

    def push(self, events: list, now: float = 0.0) -> None:
        self.feed.push(self.core.events(events), now, self.released, self.rejects)

    def expire(self, now: float) -> None:
        self.feed.expire(now, self.released)

    def finish(self) -> None:
        self.feed.finish(self.released)

    @property
    def ready(self) -> list[int]:
        return seqs(self.released)


def run(
    core: Any, order: list[int], *, batch: int = 7, **kw: object
) -> tuple[list[int], list, Any]:
    d = Driver(core, **kw)
    for i in range(0, len(order), batch):
        d.push([ev(s) for s in order[i : i + batch]])
    d.finish()
    return d.ready, d.rejects, d.feed


class TestOrdering:
    @settings(
        max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        st.integers(min_value=0, max_value=300),
        st.integers(min_value=0, max_value=60),
        st.integers(min_value=1, max_value=50),
        st.randoms(use_true_random=False),
    )
    def test_permutation_within_window_gives_sorted_output(
        self, core: Any, n: int, window: int, batch: int, rng: random.Random
    ) -> None:
        """Any displacement within the window, cut into any batches, comes out sorted."""
        order = displace(n, window, rng)
        out, rejects, r = run(core, order, batch=batch, max_pending=window + 1)
        assert out == sorted(order)
        assert rejects == []
        assert r.gaps_skipped == 0

    def test_contiguous_events_are_forwarded_at_once(self, core: Any) -> None:
        """In-order events do not wait."""
        d = Driver(core, start_seq=5)
        d.push([ev(5), ev(6), ev(8)])
        assert d.ready == [5, 6]
        assert d.feed.pending == 1
        d.push([ev(7)])
        assert d.ready == [5, 6, 7, 8]

    def test_output_does_not_depend_on_batching(self, core: Any) -> None:
        """One event per batch or all at once: the same output, the same skips."""
        rng = random.Random(7)
        order = [s for s in displace(3000, 80, rng) if s % 97]  # with gaps
        one, _, r1 = run(core, order, batch=1, max_pending=50)
        many, _, r2 = run(core, order, batch=1000, max_pending=50)
        assert one == many
        assert r1.gaps_skipped == r2.gaps_skipped > 0


class TestStartupWindow:
    def test_lowest_seq_of_window_starts_at_end_of_input(self, core: Any) -> None:
        """Without --start-seq and a clock, the window closes at end of input."""
        out, _, r = run(core, [12, 10, 11, 14, 13])
        assert out == [10, 11, 12, 13, 14]
        assert r.first_seq == 10

    def test_window_closes_on_max_pending(self, core: Any) -> None:
        """More than max_pending waiting closes the window; earlier seqs are then late."""
        d = Driver(core, max_pending=3)
        d.push([ev(20), ev(22), ev(21), ev(23)])
        assert d.ready == [20, 21, 22, 23]
        d.push([ev(19)])
        assert [x.reason for x in d.rejects] == ["late"]

    def test_window_closes_on_timeout_when_following(self, core: Any) -> None:
        """With a clock, the window closes gap_timeout after the first event arrived."""
        d = Driver(core, gap_timeout=2.0)
        d.push([ev(11), ev(10)], 100.0)
        assert d.ready == [] and d.feed.deadline() == 102.0
        d.expire(101.9)
        assert d.ready == []
        d.expire(102.0)
        assert d.ready == [10, 11]

    def test_start_seq_given(self, core: Any) -> None:
        """--start-seq: lower seqs are late, the first one is awaited."""
        out, rejects, _ = run(core, [4, 6, 5], start_seq=5)
        assert out == [5, 6]
        assert [(x.line, x.reason) for x in rejects] == [(4, "late")]


class TestGaps:
    def test_gap_skipped_after_timeout_with_its_range(self, core: Any) -> None:
        """A gap older than gap_timeout is declared lost, its range reported."""
        d = Driver(core, start_seq=1, gap_timeout=2.0)
        d.push([ev(1), ev(4), ev(5)], 10.0)
        assert d.ready == [1]
        d.expire(11.99)
        assert d.ready == [1]
        d.expire(12.0)
        assert d.ready == [1, 4, 5]
        assert d.feed.skipped == [(2, 3)]
        assert (d.feed.gaps_skipped, d.feed.seqs_lost) == (1, 2)

    def test_second_gap_times_from_when_it_was_first_missed(self, core: Any) -> None:
        """After a skip, the next gap's clock started when its later events arrived."""
        d = Driver(core, start_seq=1, gap_timeout=2.0)
        d.push([ev(1), ev(3)], 0.0)
        d.push([ev(5)], 1.0)
        d.expire(2.0)  # gap 2 skipped; gap 4 was first missed at t=1.0
        assert d.ready == [1, 3]
        assert d.feed.deadline() == 3.0
        d.expire(3.0)
        assert d.ready == [1, 3, 5]
        assert d.feed.skipped == [(2, 2), (4, 4)]

    def test_no_clock_means_no_timeout(self, core: Any) -> None:
        """Without --follow only max_pending and end of input skip a gap."""
        d = Driver(core, start_seq=1, max_pending=10)
        d.push([ev(1), ev(3)])
        assert d.feed.deadline() is None
        d.expire(1e9)
        assert d.ready == [1]
        d.finish()
        assert d.ready == [1, 3]

    def test_max_pending_bounds_memory(self, core: Any) -> None:
        """Never more than max_pending events wait, whatever arrives."""
        d = Driver(core, start_seq=0, max_pending=100)
        rng = random.Random(3)
        for _ in range(200):
            d.push([ev(rng.randrange(1, 100_000)) for _ in range(50)])
            assert d.feed.pending <= 100
        assert d.ready == sorted(d.ready)
        assert d.feed.arrivals == 0  # no clock, no arrival log

    def test_arrival_log_follows_waiting_events_not_history(self, core: Any) -> None:
        """With a clock, the log of arrival times is compacted as gaps close."""
        d = Driver(core, start_seq=0, max_pending=100, gap_timeout=60.0)
        for i in range(0, 20_000, 2):  # each odd seq waits until the next even one arrives
            d.push([ev(i + 1), ev(i)], float(i))
        assert d.ready == list(range(20_000))
        assert d.feed.arrivals <= 2 * d.feed.pending + 1024


class TestLateAndDuplicate:
    def test_late_and_duplicate_rows_are_rejected_with_their_line(self, core: Any) -> None:
        """A passed-over seq is late; one seen before (waiting or applied) is duplicate."""
        d = Driver(core, start_seq=10, max_pending=1)
        d.push([ev(10, 2), ev(10, 3), ev(13, 4), ev(13, 5), ev(14, 6)])
        # 14 made two wait (> max_pending): 11..12 skipped
        d.push([ev(11, 7), ev(13, 8)])
        assert d.ready == [10, 13, 14]
        assert [(x.line, x.reason, x.raw) for x in d.rejects] == [
            (3, "duplicate", "raw10"),
            (5, "duplicate", "raw13"),
            (7, "late", "raw11"),
            (8, "duplicate", "raw13"),
        ]
        assert (d.feed.late, d.feed.duplicate) == (1, 3)

    def test_snapshot_restore_round_trip(self, core: Any) -> None:
        """A restored feed continues exactly like the original."""
        a = Driver(core, start_seq=1, max_pending=100)
        a.push([ev(s) for s in (1, 2, 5, 7, 9)])
        b = Driver(core, max_pending=100)
        b.feed.restore(a.feed.snapshot(), 0.0)
        tail = [ev(s) for s in (3, 4, 6, 8)]
        a.push(tail)
        b.push(tail)
        assert a.ready == [1, 2, 3, 4, 5, 6, 7, 8, 9]
        assert b.ready == [3, 4, 5, 6, 7, 8, 9]

    def test_waiting_events_keep_every_field(self, core: Any) -> None:
        """An event that waited comes out as it went in (the compact storage). Its raw line may
        be dropped: a released event is never rejected, so nothing reads it again."""
        d = Driver(core, start_seq=1)
        waiting = event(2, TRADE, "ord-9", SELL, 123_450_000_000, 77, time="t2", line=40)
        d.push([waiting._replace(instrument="ESZ6", raw="2,...")])
        d.push([ev(1)])
        assert list(d.released)[1]._replace(raw="") == waiting._replace(instrument="ESZ6", raw="")


class TestStateCheck:
    def test_consistent_snapshot_passes(self, core: Any) -> None:
        """A snapshot the feed took itself has no inconsistency."""
        d = Driver(core, start_seq=1, max_pending=2)
        d.push([ev(s) for s in (1, 2, 5, 7, 9, 20)])
        assert d.feed.snapshot().check() is None

    def test_waiting_seq_not_after_next_expected_is_refused(self, core: Any) -> None:
        """A waiting seq at or below the next expected one would never be released."""
        d = Driver(core, start_seq=1)
        d.push([ev(1), ev(5)])
        state = d.feed.snapshot()
        state.next_seq = 9
        assert state.check() == "waiting seq 5 is not after the next expected seq 9"


class TestHeldStrings:
    """The compiled feed leaves a waiting event's strings in its input batch, holding at most a
    few batches: past that, the oldest one's waiting events get copies. Released events and
    snapshots must be the reference's whatever the batches, and hold up after their input
    batches are gone."""

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        seed=st.integers(0, 2**32),
        n=st.integers(1, 300),
        window=st.integers(0, 80),
        far=st.integers(0, 12),
        sizes=st.lists(st.integers(1, 9), min_size=1, max_size=12),
        snap_at=st.integers(0, 40),
        data=st.data(),
    )
    def test_released_events_are_the_references(  # type: ignore[no-untyped-def]
        self, seed, n, window, far, sizes, snap_at, data
    ) -> None:
        from l3tol1.core import load

        cores = [load("python"), load("compiled")]
        rng = random.Random(seed)
        order = displace(n, window, rng)
        # seqs far ahead: each waits across many batches (pinned, then copied)
        order[0:0] = [10_000 + k for k in range(far)]
        rng.shuffle(order[: far * 2])
        times = data.draw(st.sampled_from(["2024-01-02 03:04:05.000006 UTC", "t", "", "é"]))
        events = [
            event(s, order_id=f"{s * 7919 % 100_003:0{s % 3}d}x"[: 1 + s % 9], time=times)
            for s in order
        ]
        results = []
        for core in cores:
            d = Driver(core, start_seq=1000, max_pending=40)
            snapshot = None
            i = batch = 0
            while i < len(events):
                size = sizes[batch % len(sizes)]
                d.push(events[i : i + size])
                i, batch = i + size, batch + 1
                if batch == snap_at:
                    snapshot = d.feed.snapshot()
            d.finish()
            # the raw line of a released event is never read (only a reject's is), and the
            # compiled feed does not keep it for a waiting one
            released = [e._replace(raw="") for e in d.released]
            results.append((released, d.rejects, snapshot))
        assert results[0] == results[1]
