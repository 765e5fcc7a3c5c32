"""Books and the L1 write rule against the dict-and-scan model (SPEC §1-3, §9, §12), per core."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l3tol1.core.records import Action, Anomaly, Event, Quote
from tests.model import ADD, BUY, DELETE, SELL, TRADE, UPDATE, ModelBook, ev, model_rows

# Few ids and prices, so that collisions (anomalies, shared levels, crossed books) are common.
PRICES = [99_500_000_000, 100_000_000_000, 100_250_000_000, 100_500_000_000, 101_000_000_000, 1]
actions = st.tuples(
    st.sampled_from([ADD, ADD, UPDATE, DELETE, DELETE, TRADE]),
    st.sampled_from(["1", "2", "3", "4", "5", "01"]),
    st.sampled_from([BUY, SELL]),
    st.sampled_from(PRICES),
    st.integers(min_value=0, max_value=6),
).map(lambda a: a if a[0] != ADD or a[4] > 0 else (*a[:4], 1))  # the parser rejects qty-0 ADDs


def with_core(examples: int) -> Any:
    """Hypothesis settings for a test that also takes the (function-scoped) core fixture."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )


def events_of(actions: list, instruments: list[str] | None = None) -> list[Event]:
    return [
        ev(
            i,
            a,
            oid,
            side,
            price if a != DELETE else 0,
            qty if a != DELETE else 0,
            time=f"t{i}",
            instrument=instruments[i % len(instruments)] if instruments else "",
        )
        for i, (a, oid, side, price, qty) in enumerate(actions)
    ]


def apply(core: Any, instruments: Any, events: list[Event], anomalies: list | None = None) -> list:
    """Apply events through the core's own containers; the quotes as a list."""
    quotes = core.quotes()
    instruments.apply(core.events(events), quotes, [] if anomalies is None else anomalies)
    return list(quotes)


def rows_of(quotes: list[Quote]) -> list:
    return [(q.seq, q.instrument, (q.bid, q.ask, q.bid_size, q.ask_size)) for q in quotes]


class TestOneBook:
    @with_core(300)
    @given(st.lists(actions, max_size=120))
    def test_matches_model_after_every_event(self, core: Any, actions: list) -> None:
        """Best bid/ask, their sizes and the anomaly counts equal the model's after each event."""
        instruments, model = core.instruments(), ModelBook()
        for event in events_of(actions):
            apply(core, instruments, [event])
            model.apply(event.action, event.order_id, event.side, event.price, event.qty)
            book = instruments.book()
            assert book.best_bid() == model.side_best(BUY)
            assert book.best_ask() == model.side_best(SELL)
        assert instruments.anomalies == model.anomalies
        assert len(instruments.book()) == len(model.orders)

    @with_core(200)
    @given(st.lists(actions, max_size=150))
    def test_l1_rows_match_model(self, core: Any, actions: list) -> None:
        """Rows are written exactly when the two-sided BBO changes, crossed books included."""
        events = events_of(actions)
        quotes = apply(core, core.instruments(), events)
        assert rows_of(quotes) == model_rows(events)
        assert all(q.time == f"t{q.seq}" for q in quotes)

    @with_core(200)
    @given(st.lists(actions, max_size=120), st.lists(st.integers(0, 120), max_size=8))
    def test_rows_do_not_depend_on_batch_cuts_or_restarts(
        self, core: Any, actions: list, cuts: list[int]
    ) -> None:
        """Any cut into batches, with a snapshot and restore at each cut: the model's rows."""
        events = events_of(actions)
        bounds = [0, *sorted(c for c in cuts if c <= len(events)), len(events)]
        instruments = core.instruments()
        quotes: list[Quote] = []
        for start, end in pairwise(bounds):
            quotes += apply(core, instruments, events[start:end])
            state = instruments.snapshot()
            instruments = core.instruments()
            instruments.restore(state)
        assert rows_of(quotes) == model_rows(events)

    def test_same_order_id_on_both_sides_is_two_orders(self, core: Any) -> None:
        """An order is the pair (order_id, side)."""
        instruments = core.instruments()
        apply(core, instruments, [ev(1, ADD, "7", BUY, 100, 5), ev(2, ADD, "7", SELL, 101, 3)])
        assert instruments.anomalies == {}
        apply(core, instruments, [ev(3, DELETE, "7", BUY, 0, 0)])
        assert instruments.book().best_bid() is None
        assert instruments.book().best_ask() == (101, 3)

    def test_each_anomaly_is_applied_and_counted(self, core: Any) -> None:
        """SPEC §3: replace, insert, ignore, ignore, remove — each counted once."""
        instruments = core.instruments()
        found: list = []

        def step(*args: object) -> None:
            apply(core, instruments, [ev(0, *args)], found)  # type: ignore[arg-type]

        step(ADD, "a", BUY, 100, 5)
        step(ADD, "a", BUY, 99, 7)  # ADD of a live order replaces it
        assert instruments.book().best_bid() == (99, 7)
        step(UPDATE, "b", SELL, 101, 2)  # UPDATE of an unknown order inserts it
        assert instruments.book().best_ask() == (101, 2)
        step(DELETE, "zz", SELL, 0, 0)  # unknown: no change
        step(TRADE, "zz", SELL, 101, 1)  # unknown: no change
        assert instruments.book().best_ask() == (101, 2)
        step(TRADE, "b", SELL, 101, 5)  # larger than resting: removed
        assert instruments.book().best_ask() is None
        assert instruments.anomalies == {
            Anomaly.ADD_LIVE: 1,
            Anomaly.UPDATE_UNKNOWN: 1,
            Anomaly.DELETE_UNKNOWN: 1,
            Anomaly.TRADE_UNKNOWN: 1,
            Anomaly.TRADE_EXCEEDS: 1,
        }
        assert [kind for kind, _ in found] == list(instruments.anomalies)

    def test_partial_trade_keeps_rest_and_exact_trade_removes(self, core: Any) -> None:
        """A TRADE subtracts from the resting qty and removes the order at zero."""
        instruments = core.instruments()
        apply(
            core,
            instruments,
            [
                ev(1, ADD, "a", BUY, 100, 5),
                ev(2, ADD, "b", BUY, 100, 4),
                ev(3, TRADE, "a", BUY, 100, 2),
            ],
        )
        assert instruments.book().best_bid() == (100, 7)
        apply(core, instruments, [ev(4, TRADE, "a", BUY, 100, 3)])
        assert instruments.book().best_bid() == (100, 4)
        assert instruments.anomalies == {}

    def test_heap_stays_bounded_under_level_churn(self, core: Any) -> None:
        """Stale heap entries are compacted: memory follows live levels, not history."""
        instruments = core.instruments()
        events = [ev(0, ADD, "keep", SELL, 1000, 1)]
        for i in range(50_000):
            events += [
                ev(2 * i + 1, ADD, str(i), BUY, 1 + i, 1),
                ev(2 * i + 2, DELETE, str(i), BUY, 0, 0),
            ]
        apply(core, instruments, events)
        book = instruments.book()
        assert book.best_bid() is None
        assert instruments.heap_sizes()[BUY] <= 2 * book.level_count() + 1024 + 1

    def test_deep_level_changes_write_nothing(self, core: Any) -> None:
        """Events below the best level of both sides leave the BBO, so they write no row."""
        instruments = core.instruments()
        events = [
            ev(1, ADD, "b", BUY, 100, 5),
            ev(2, ADD, "a", SELL, 101, 5),
            ev(3, ADD, "x", BUY, 99, 5),
            ev(4, ADD, "y", SELL, 102, 5),
            ev(5, TRADE, "x", BUY, 99, 2),
            ev(6, UPDATE, "y", SELL, 103, 1),
            ev(7, DELETE, "x", BUY, 0, 0),
            ev(8, ADD, "b2", BUY, 100, 1),  # at the best: a row
        ]
        assert [q.seq for q in apply(core, instruments, events)] == [2, 8]
        assert instruments.last_quote("") == (100, 101, 6, 5)

    def test_crossed_and_locked_quotes_are_written_and_counted(self, core: Any) -> None:
        """A crossed book (bid > ask) and a locked one (bid == ask) are written as they are."""
        instruments = core.instruments()
        quotes = apply(
            core,
            instruments,
            [
                ev(1, ADD, "b", BUY, 100, 1),
                ev(2, ADD, "a", SELL, 100, 1),
                ev(3, ADD, "c", BUY, 101, 1),
            ],
        )
        assert [(q.bid, q.ask) for q in quotes] == [(100, 100), (101, 100)]
        assert (instruments.locked, instruments.crossed) == (1, 1)


class TestManyInstruments:
    @with_core(200)
    @given(
        st.lists(actions, max_size=150),
        st.lists(st.sampled_from(["A", "B", "C", "ES,H1", ""]), min_size=1, max_size=4),
        st.lists(st.integers(0, 150), max_size=5),
    )
    def test_each_instrument_has_its_own_book_and_write_rule(
        self, core: Any, actions: list, names: list[str], cuts: list[int]
    ) -> None:
        """Interleaved instruments, cut into batches with restores: per-instrument model rows."""
        events = events_of(actions, names)
        bounds = [0, *sorted(c for c in cuts if c <= len(events)), len(events)]
        instruments = core.instruments()
        quotes: list[Quote] = []
        for start, end in pairwise(bounds):
            quotes += apply(core, instruments, events[start:end])
            state = instruments.snapshot()
            instruments = core.instruments()
            instruments.restore(state)
        assert rows_of(quotes) == model_rows(events)

    def test_same_order_id_in_two_instruments_is_two_orders(self, core: Any) -> None:
        """An order is (instrument, order_id, side)."""
        instruments = core.instruments()
        apply(
            core,
            instruments,
            [
                ev(1, ADD, "7", BUY, 100, 5, instrument="A"),
                ev(2, ADD, "7", BUY, 200, 3, instrument="B"),
                ev(3, DELETE, "7", BUY, 0, 0, instrument="A"),
            ],
        )
        assert instruments.book("A").best_bid() is None
        assert instruments.book("B").best_bid() == (200, 3)
        assert instruments.anomalies == {}

    def test_crossed_instrument_beside_a_one_sided_one(self, core: Any) -> None:
        """One instrument crossed while another is one-sided: rows for the first only."""
        quotes = apply(
            core,
            core.instruments(),
            [
                ev(1, ADD, "b", BUY, 105, 1, instrument="X"),
                ev(2, ADD, "s", SELL, 100, 1, instrument="X"),
                ev(3, ADD, "b", BUY, 50, 1, instrument="Y"),
            ],
        )
        assert [(q.instrument, q.bid, q.ask) for q in quotes] == [("X", 105, 100)]

    def test_kept_instruments_only(self, core: Any) -> None:
        """--instruments: other instruments get no book and no rows, and are counted."""
        instruments = core.instruments(keep=["B"])
        quotes = apply(
            core,
            instruments,
            [
                ev(1, ADD, "b", BUY, 1, 1, instrument="A"),
                ev(2, ADD, "s", SELL, 2, 1, instrument="A"),
                ev(3, ADD, "b", BUY, 1, 1, instrument="B"),
                ev(4, ADD, "s", SELL, 2, 1, instrument="B"),
            ],
        )
        assert [(q.instrument, q.seq) for q in quotes] == [("B", 4)]
        assert (instruments.applied, instruments.skipped, len(instruments)) == (2, 2, 1)


class TestVenueEvents:
    def test_rows_only_after_the_last_record_of_an_event(self, core: Any) -> None:
        """States inside one venue event (records without F_LAST) never write a row."""
        events = [
            ev(1, ADD, "b", BUY, 100, 1)._replace(last=False),
            ev(2, ADD, "s", SELL, 101, 1)._replace(last=False),
            ev(3, ADD, "s2", SELL, 100, 1)._replace(last=True),  # locked, then the event ends
            ev(4, Action.NONE, "", BUY, 0, 0)._replace(last=True),  # no change, no row
        ]
        instruments = core.instruments()
        quotes = apply(core, instruments, events[:2]) + apply(core, instruments, events[2:])
        assert [(q.seq, q.bid, q.ask) for q in quotes] == [(3, 100, 100)]

    def test_clear_empties_the_book(self, core: Any) -> None:
        """A clear removes every order of the instrument; the next two-sided state is written."""
        instruments = core.instruments()
        quotes = apply(
            core,
            instruments,
            [
                ev(1, ADD, "b", BUY, 100, 1, instrument="X"),
                ev(2, ADD, "s", SELL, 101, 1, instrument="X"),
                ev(3, ADD, "o", SELL, 101, 1, instrument="Y"),
                ev(4, Action.CLEAR, "", BUY, 0, 0, instrument="X"),
                ev(5, ADD, "b", BUY, 100, 1, instrument="X"),
                ev(6, ADD, "s", SELL, 101, 1, instrument="X"),
            ],
        )
        assert [q.seq for q in quotes] == [2]  # the same BBO as the last row: no new row
        assert len(instruments.book("X")) == 2 and len(instruments.book("Y")) == 1
