"""OrderBook.apply_events across batch boundaries and restarts (SPEC §2, §8).

apply_events reads the BBO only after events that touch the best level of their side, relying
on the last row written matching the book in between. These tests cut one event stream into
batches anywhere, and restore the book from a snapshot between batches, and check that the rows
are those of the dict-and-scan model.
"""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from l3tol1.book import OrderBook
from l3tol1.events import ADD, BUY, DELETE, SELL, TRADE, UPDATE
from l3tol1.instrument import Instrument
from l3tol1.resequencer import Resequencer
from tests.model import model_rows

actions = st.tuples(
    st.sampled_from([ADD, ADD, UPDATE, DELETE, DELETE, TRADE]),
    st.sampled_from(["1", "2", "3", "4", "5", "01"]),
    st.sampled_from([BUY, SELL]),
    st.sampled_from([99.5, 100.0, 100.25, 100.5, 101.0]),
    st.integers(min_value=0, max_value=6),
).map(lambda a: a if a[0] != ADD or a[4] > 0 else (*a[:4], 1))


def full_events(events: list) -> list:
    return [
        (i, a, oid, side, price, qty, f"t{i}", i + 2, "raw")
        for i, (a, oid, side, price, qty) in enumerate(events)
    ]


class TestBatches:
    @settings(max_examples=200, deadline=None)
    @given(st.lists(actions, max_size=120), st.lists(st.integers(0, 120), max_size=8))
    def test_rows_do_not_depend_on_batch_cuts_or_restarts(
        self, events: list, cuts: list[int]
    ) -> None:
        """Any cut into batches, with a snapshot and restore at each cut: the model's rows."""
        full = full_events(events)
        bounds = [0, *sorted(c for c in cuts if c <= len(full)), len(full)]
        instrument = Instrument(Resequencer(start_seq=0))
        rows: list = []
        for start, end in pairwise(bounds):
            instrument.apply(full[start:end], rows, [])
            state = instrument.snapshot_after_apply()
            instrument = Instrument(Resequencer(start_seq=end))
            instrument.restore_after_apply(state)
        assert [(r[1], tuple(r[2:])) for r in rows] == model_rows(full)
        assert all(r[0] == f"t{r[1]}" for r in rows)

    def test_book_handed_in_without_a_last_row(self) -> None:
        """A two-sided book with no row written yet gets its row at the next event."""
        book = OrderBook()
        book.apply(ADD, "b", BUY, 100.0, 1)
        book.apply(ADD, "a", SELL, 101.0, 1)
        book.apply(ADD, "deep", BUY, 90.0, 1)
        rows: list = []
        # The event touches a deep level only; the row is still due (nothing written so far).
        last = book.apply_events([(7, DELETE, "deep", BUY, 0.0, 0, "t", 9, "raw")], None, rows, [])
        assert rows == [("t", 7, 100.0, 101.0, 1, 1)]
        assert last == (100.0, 101.0, 1, 1)

    def test_deep_level_changes_write_nothing(self) -> None:
        """Events below the best level of both sides leave the BBO, so they write no row."""
        book = OrderBook()
        rows: list = []
        setup = [
            (1, ADD, "b", BUY, 100.0, 5, "t", 2, ""),
            (2, ADD, "a", SELL, 101.0, 5, "t", 3, ""),
        ]
        last = book.apply_events(setup, None, rows, [])
        deep = [
            (3, ADD, "x", BUY, 99.0, 5, "t", 4, ""),
            (4, ADD, "y", SELL, 102.0, 5, "t", 5, ""),
            (5, TRADE, "x", BUY, 99.0, 2, "t", 6, ""),
            (6, UPDATE, "y", SELL, 103.0, 1, "t", 7, ""),
            (7, DELETE, "x", BUY, 0.0, 0, "t", 8, ""),
            (8, ADD, "b2", BUY, 100.0, 1, "t", 9, ""),  # at the best: a row
        ]
        last = book.apply_events(deep, last, rows, [])
        assert [r[1] for r in rows] == [2, 8]
        assert last == (100.0, 101.0, 6, 5)
