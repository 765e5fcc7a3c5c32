"""OrderBook and the L1 write rule against the dict-and-scan model (SPEC §1-3)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from l3tol1.book import Anomaly, OrderBook
from l3tol1.events import ADD, BUY, DELETE, SELL, TRADE, UPDATE
from l3tol1.instrument import Instrument
from l3tol1.resequencer import Resequencer
from tests.model import ModelBook, model_rows

# Few ids and prices, so that collisions (anomalies, shared levels, crossed books) are common.
actions = st.tuples(
    st.sampled_from([ADD, ADD, UPDATE, DELETE, DELETE, TRADE]),
    st.sampled_from(["1", "2", "3", "4", "5", "01"]),
    st.sampled_from([BUY, SELL]),
    st.sampled_from([99.5, 100.0, 100.25, 100.5, 101.0, 0.01, 1e16]),
    st.integers(min_value=0, max_value=6),
).map(lambda a: a if a[0] != ADD or a[4] > 0 else (*a[:4], 1))  # the parser rejects qty-0 ADDs


class TestOrderBook:
    @settings(max_examples=400)
    @given(st.lists(actions, max_size=120))
    def test_matches_model_after_every_event(self, events: list) -> None:
        """Best bid/ask, their sizes and the anomaly counts equal the model's after each event."""
        book, model = OrderBook(), ModelBook()
        for action, oid, side, price, qty in events:
            book.apply(action, oid, side, price, qty)
            model.apply(action, oid, side, price, qty)
            assert book.best_bid() == model.side_best(BUY)
            assert book.best_ask() == model.side_best(SELL)
        assert book.anomalies == model.anomalies
        assert len(book) == len(model.orders)

    @settings(max_examples=200)
    @given(st.lists(actions, max_size=150))
    def test_l1_rows_match_model(self, events: list) -> None:
        """Rows are written exactly when the two-sided BBO changes, crossed books included."""
        full = [
            (i, a, oid, side, price, qty, "t", i + 2, "raw")
            for i, (a, oid, side, price, qty) in enumerate(events)
        ]
        instrument = Instrument(Resequencer(start_seq=0))
        rows: list = []
        instrument.apply(full, rows, [])
        assert [(r[1], tuple(r[2:])) for r in rows] == model_rows(full)

    def test_same_order_id_on_both_sides_is_two_orders(self) -> None:
        """An order is the pair (order_id, side)."""
        book = OrderBook()
        book.apply(ADD, "7", BUY, 100.0, 5)
        book.apply(ADD, "7", SELL, 101.0, 3)
        assert book.anomalies == {}
        book.apply(DELETE, "7", BUY, 0.0, 0)
        assert book.best_bid() is None
        assert book.best_ask() == (101.0, 3)

    def test_each_anomaly_is_applied_and_counted(self) -> None:
        """SPEC §3: replace, insert, ignore, ignore, remove — each counted once."""
        book = OrderBook()
        book.apply(ADD, "a", BUY, 100.0, 5)
        book.apply(ADD, "a", BUY, 99.0, 7)  # ADD of a live order replaces it
        assert book.best_bid() == (99.0, 7)
        book.apply(UPDATE, "b", SELL, 101.0, 2)  # UPDATE of an unknown order inserts it
        assert book.best_ask() == (101.0, 2)
        book.apply(DELETE, "zz", SELL, 0.0, 0)  # unknown: no change
        book.apply(TRADE, "zz", SELL, 101.0, 1)  # unknown: no change
        assert book.best_ask() == (101.0, 2)
        book.apply(TRADE, "b", SELL, 101.0, 5)  # larger than resting: removed
        assert book.best_ask() is None
        assert book.anomalies == {
            Anomaly.ADD_LIVE: 1,
            Anomaly.UPDATE_UNKNOWN: 1,
            Anomaly.DELETE_UNKNOWN: 1,
            Anomaly.TRADE_UNKNOWN: 1,
            Anomaly.TRADE_EXCEEDS: 1,
        }

    def test_partial_trade_keeps_rest_and_exact_trade_removes(self) -> None:
        """A TRADE subtracts from the resting qty and removes the order at zero."""
        book = OrderBook()
        book.apply(ADD, "a", BUY, 100.0, 5)
        book.apply(ADD, "b", BUY, 100.0, 4)
        book.apply(TRADE, "a", BUY, 100.0, 2)
        assert book.best_bid() == (100.0, 7)
        book.apply(TRADE, "a", BUY, 100.0, 3)
        assert book.best_bid() == (100.0, 4)
        assert book.anomalies == {}

    def test_heap_stays_bounded_under_level_churn(self) -> None:
        """Stale heap entries are compacted: memory follows live levels, not history."""
        book = OrderBook()
        book.apply(ADD, "keep", SELL, 1000.0, 1)
        for i in range(50_000):
            book.apply(ADD, str(i), BUY, 1.0 + i / 100, 1)
            book.apply(DELETE, str(i), BUY, 0.0, 0)
        assert book.best_bid() is None
        assert len(book._heaps[BUY]) <= 2 * book.level_count() + 1024 + 1

    def test_snapshot_restore_round_trip(self) -> None:
        """A restored book answers exactly like the original."""
        book = OrderBook()
        for i in range(200):
            book.apply(ADD, str(i), i % 2, 100.0 + (i % 17) / 4, i % 5 + 1)
        book.apply(DELETE, "zz", BUY, 0.0, 0)
        copy = OrderBook.restore(book.snapshot())
        assert copy.best_bid() == book.best_bid()
        assert copy.best_ask() == book.best_ask()
        assert copy.anomalies == book.anomalies
        assert copy.snapshot() == book.snapshot()
