"""The output schemas (SPEC §14) of the Python reference, `core.schemas.Depths`, against the small
model of tests/model.py (a dict of orders per instrument, levels found by sorting them all), row
for row: L3 CSV feeds and Databento-style feeds, several instruments, anomalies, deep, one-sided
and empty books, gaps, times that go back, kept instruments, batches cut anywhere with a
checkpoint (snapshot and restore, through its plain form) at every cut."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l3tol1.core.plain import PlainReader
from l3tol1.core.records import Action, Event, Side
from l3tol1.core.schemas import SCHEMAS, Depths, DepthsState, Row, RowFormatter, csv_columns
from tests.model import UNDEF_PRICE, csv_time_ns, model_schema_rows

ROW_SCHEMAS = ["mbp-1", "mbp-10", "tbbo", "bbo-1s", "bbo-1m"]
NAMES = ["A", "B", "a", "é", "ES,H1"]  # bytes order: A < B < ES,H1 < a < é
CSV_BASE = datetime(2021, 8, 3, 1, 0, 0, tzinfo=UTC)
DBN_BASE = 1_703_541_600_000_000_000  # 2023-12-25 22:00:00 UTC
# few prices, so that levels are shared and books cross; a deep start gives each side 12 levels
PRICES = [p * 250_000_000 for p in range(390, 416)]
DEEP_BIDS, DEEP_ASKS = PRICES[:12], PRICES[14:]
# steps of the feed's time: within an interval, across 1 s and 1 min ones, and back
CSV_STEPS_US = [
    0,
    1,
    250_000,
    999_999,
    1_000_000,
    59_000_000,
    61_000_000,
    -1,
    -1_100_000,
    -61_000_000,
]
DBN_STEPS_NS = [0, 1, 400_000_000, 1_000_000_000, 59_999_999_999, 61 * 10**9, -1, -2 * 10**9]


def deep_start(draw: st.DrawFn) -> list[int]:
    """The prices of orders that may open a feed, alternately bids and asks: 12 levels a side."""
    if not draw(st.booleans()):
        return []
    return [price for pair in zip(DEEP_BIDS, DEEP_ASKS, strict=True) for price in pair]


def csv_time(at: datetime, digits: int) -> str:
    """An L3 CSV time with ``digits`` fraction digits (0: none), exact (at is whole at that)."""
    text = at.strftime("%Y-%m-%d %H:%M:%S")
    if digits:
        text += "." + f"{at.microsecond:06d}"[:digits]
    return text + " UTC"


@st.composite
def csv_feeds(draw: st.DrawFn) -> list[Event]:
    """L3 CSV events (SPEC §1, §9) of 1-3 instruments: every action, unknown orders, trades
    larger than what rests, zero-qty trades and updates, times with 0-6 digits that go back."""
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))
    at = CSV_BASE + timedelta(hours=1)
    events = [
        Event(
            i,
            int(Action.ADD),
            names[0],
            f"d{i}",
            i % 2,
            price,
            1 + i % 3,
            csv_time(at, 0),
            i,
            "",
            True,
        )
        for i, price in enumerate(deep_start(draw))
    ]
    seq = len(events) + draw(st.integers(0, 5))
    for _ in range(draw(st.integers(0, 90))):
        action = draw(
            st.sampled_from(
                [Action.ADD] * 4 + [Action.UPDATE, Action.DELETE] * 2 + [Action.TRADE] * 3
            )
        )
        side = draw(st.sampled_from([Side.BUY, Side.SELL]))
        price = draw(st.sampled_from(PRICES))
        qty = draw(st.integers(1 if action == Action.ADD else 0, 6))
        if action == Action.DELETE:
            price = qty = 0
        at += timedelta(microseconds=draw(st.sampled_from(CSV_STEPS_US)))
        digits = draw(st.integers(0, 6))
        at = at.replace(microsecond=int(f"{at.microsecond:06d}"[:digits].ljust(6, "0")))
        seq += draw(st.sampled_from([1, 1, 1, 2]))
        events.append(
            Event(
                seq,
                int(action),
                draw(st.sampled_from(names)),
                draw(st.sampled_from([f"d{i}" for i in range(24)] + list("12345"))),
                int(side),
                price,
                qty,
                csv_time(at, digits),
                seq,
                f"raw{seq}",
                True,
            )
        )
    return events


@st.composite
def dbn_feeds(draw: st.DrawFn) -> list[Event]:
    """Databento MBO events as core/mbo.py makes them (SPEC §12): adds, modifies, cancels,
    clears, trades, fills and nones, venue events of several records (F_LAST), side N on what
    changes no order, undefined and negative prices, ts_event apart from ts_recv."""
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))
    ts_recv = DBN_BASE + 10**6
    events = [
        Event(
            i,
            int(Action.ADD),
            names[0],
            str(100 + i),
            i % 2,
            price,
            1 + i % 3,
            ts_recv,
            i,
            "",
            i % 5 == 4,
            ts_recv,
        )
        for i, price in enumerate(deep_start(draw))
    ]
    first = len(events)
    for seq in range(first, first + draw(st.integers(0, 90))):
        action = draw(
            st.sampled_from(
                [Action.ADD] * 5
                + [Action.UPDATE, Action.CANCEL] * 2
                + [Action.CLEAR, Action.PRINT, Action.PRINT, Action.FILL, Action.NONE]
            )
        )
        order_action = action in (Action.ADD, Action.UPDATE, Action.CANCEL)
        side = draw(st.sampled_from([Side.BUY, Side.SELL] + ([] if order_action else [Side.NONE])))
        prices = [*PRICES, -1_500_000_000, 0]
        if action not in (Action.ADD, Action.UPDATE):
            prices += [UNDEF_PRICE]
        ts_recv += draw(st.sampled_from(DBN_STEPS_NS))
        events.append(
            Event(
                seq,
                int(action),
                draw(st.sampled_from(names)),
                str(draw(st.integers(100, 130))),
                int(side),
                draw(st.sampled_from(prices)),
                draw(st.integers(0, 6)),
                ts_recv,
                seq,
                "",
                draw(st.sampled_from([True, True, True, False])),
                ts_recv - draw(st.integers(0, 10**6)),
            )
        )
    return events


def feeds() -> st.SearchStrategy[list[Event]]:
    return st.one_of(csv_feeds(), dbn_feeds())


def gaps_of(draw: st.DrawFn, events: list[Event]) -> frozenset[int]:
    return (
        frozenset(draw(st.lists(st.sampled_from([e.seq for e in events]), max_size=4)))
        if events
        else frozenset()
    )


def through_plain(state: DepthsState) -> DepthsState:
    """A state as the checkpoint stores it: to plain data, JSON text, and back, checked."""
    plain = json.loads(json.dumps(state.to_plain(), ensure_ascii=False))
    return DepthsState.from_plain(plain, "instruments", PlainReader())


def run(
    schema: str,
    events: list[Event],
    gaps: frozenset[int] = frozenset(),
    keep: list[str] | None = None,
    cuts: list[int] = (),  # type: ignore[assignment]
    plain: bool = False,
) -> list[Row]:
    """``events`` through `Depths` in batches cut at ``cuts``, restarted from a snapshot at each
    cut (``plain``: through the checkpoint's plain form), then finished (end of input)."""
    bounds = [0, *sorted(c for c in cuts if c <= len(events)), len(events)]
    depths = Depths(SCHEMAS[schema], keep)
    rows: list[Row] = []
    for start, end in pairwise(bounds):
        batch = events[start:end]
        depths.apply(batch, rows, [], {e.seq for e in batch} & gaps)
        state = depths.snapshot()
        depths = Depths(SCHEMAS[schema], keep)
        depths.restore(through_plain(state) if plain else state)
    depths.finish(rows)
    return rows


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Event], frozenset[int], list[str] | None, list[int]]:
    events = draw(feeds())
    gaps = gaps_of(draw, events)
    names = sorted({e.instrument for e in events})
    keep = draw(st.none() | st.lists(st.sampled_from(names), max_size=2)) if names else None
    cuts = draw(st.lists(st.integers(0, len(events)), max_size=5))
    return events, gaps, keep, cuts


@pytest.mark.parametrize("schema", ROW_SCHEMAS)
class TestAgainstTheModel:
    @settings(max_examples=120, deadline=None)
    @given(scenarios(), st.booleans())
    def test_rows_are_the_models(self, schema: str, scenario: tuple, plain: bool) -> None:
        """Any feed, gaps and kept instruments, in one batch or cut anywhere with a restart from
        a snapshot at each cut (through the checkpoint's plain form or not): the model's rows,
        in its order."""
        events, gaps, keep, cuts = scenario
        assert run(schema, events, gaps, keep, cuts, plain) == model_schema_rows(
            schema, events, gaps, keep
        )


def csv_event(
    seq: int,
    action: Action,
    oid: str,
    side: Side,
    price: int,
    qty: int,
    time: str = "2021-08-03 01:00:03.22333 UTC",
    name: str = "",
) -> Event:
    return Event(seq, int(action), name, oid, int(side), price, qty, time, seq, "", True)


def mbo_event(
    seq: int,
    action: Action,
    oid: str,
    side: Side,
    price: int,
    qty: int,
    *,
    last: bool = True,
    at: int = 0,
    name: str = "ES",
) -> Event:
    """A Databento record's event; ``at``: ns after DBN_BASE (ts_event 5 µs before)."""
    return Event(
        seq,
        int(action),
        name,
        oid,
        int(side),
        price,
        qty,
        DBN_BASE + at,
        seq,
        "",
        last,
        DBN_BASE + at - 5000,
    )


BUY, SELL, NO_SIDE = Side.BUY, Side.SELL, Side.NONE
T_CSV = csv_time_ns("2021-08-03 01:00:03.22333 UTC")
EMPTY = (None,) * 6


def level(
    bid: int | None,
    ask: int | None,
    bid_sz: int | None = None,
    ask_sz: int | None = None,
    bid_ct: int | None = None,
    ask_ct: int | None = None,
) -> tuple[int | None, ...]:
    return (bid, ask, bid_sz, ask_sz, bid_ct, ask_ct)


def checked(schema: str, events: list[Event], gaps: frozenset[int] = frozenset()) -> list[Row]:
    """The rows of `Depths`, which must be the model's too."""
    rows = run(schema, events, gaps)
    assert rows == model_schema_rows(schema, events, gaps)
    return rows


class TestBookAndTradeRows:
    def test_a_csv_trade_writes_a_trade_row_then_a_book_row(self) -> None:
        """SPEC §14: a TRADE that reduces a resting order gives two rows with action T and its
        sequence: the book before it, then the book after it; tbbo keeps the first alone."""
        events = [
            csv_event(1, Action.ADD, "b", BUY, 100 * 10**9, 5),
            csv_event(2, Action.ADD, "b2", BUY, 100 * 10**9, 1),
            csv_event(3, Action.ADD, "s", SELL, 101 * 10**9, 4),
            csv_event(4, Action.TRADE, "b", BUY, 100 * 10**9, 2),
        ]
        row = (T_CSV, T_CSV, "", "T", "B", 100 * 10**9, 2, 4, 0)
        before, after = (
            level(100 * 10**9, 101 * 10**9, 6, 4, 2, 1),
            level(100 * 10**9, 101 * 10**9, 4, 4, 2, 1),
        )
        assert checked("mbp-1", events)[-2:] == [(*row, before), (*row, after)]
        assert checked("tbbo", events) == [(*row, before)]

    def test_one_sided_and_empty_books_are_written_but_a_first_empty_book_is_not(self) -> None:
        """A book row when the shown levels change, one-sided or empty included; an instrument's
        first event that leaves its book empty writes nothing (it compares with an empty book),
        and its anomaly is flagged on the next row."""
        events = [
            csv_event(1, Action.DELETE, "x", BUY, 0, 0),  # unknown: anomaly, book still empty
            csv_event(2, Action.ADD, "b", BUY, 100 * 10**9, 5),
            csv_event(3, Action.DELETE, "b", BUY, 0, 0),
        ]
        rows = checked("mbp-1", events)
        assert [(r.action, r.price, r.size, r.sequence, r.flags, r.levels) for r in rows] == [
            ("A", 100 * 10**9, 5, 2, 8, level(100 * 10**9, None, 5, None, 1, None)),
            ("C", None, None, 3, 0, EMPTY),  # a DELETE has no price and no size
        ]

    def test_a_change_below_the_shown_levels_writes_no_row(self) -> None:
        """mbp-1 shows level 00 only; mbp-10 shows ten: the 11th level changes no row."""
        adds = [csv_event(i, Action.ADD, f"b{i}", BUY, (200 - i) * 10**9, 1) for i in range(11)]
        deep = csv_event(11, Action.ADD, "z", BUY, 190 * 10**9, 1)  # the 11th level
        assert [r.sequence for r in checked("mbp-1", [*adds, deep])] == [0]
        assert [r.sequence for r in checked("mbp-10", [*adds, deep])] == list(range(10))

    def test_a_cancel_larger_than_what_rests_is_no_anomaly_of_flag_8(self) -> None:
        """SPEC §14 names Databento's anomalies: an add of a live order, a modify or cancel of
        an unknown one. A cancel of more than rests removes the order, unflagged."""
        events = [
            mbo_event(1, Action.ADD, "1", BUY, 10**9, 2),
            mbo_event(2, Action.CANCEL, "1", BUY, 10**9, 5),
            mbo_event(3, Action.CANCEL, "9", SELL, 10**9, 1),  # unknown: flagged on the next row
            mbo_event(4, Action.ADD, "2", SELL, 2 * 10**9, 1),
        ]
        assert [(r.sequence, r.flags) for r in checked("mbp-1", events)] == [(1, 0), (2, 0), (4, 8)]


class TestDatabentoEvents:
    def test_rows_only_at_venue_event_ends_but_trade_rows_inside(self) -> None:
        """Records without F_LAST write no book row; a T among them writes its trade row with
        the book as applied so far, and the venue event's end compares with that row."""
        price, undefined = 4799 * 10**9, UNDEF_PRICE
        events = [
            mbo_event(1, Action.ADD, "1", BUY, price, 3, last=False),
            mbo_event(2, Action.PRINT, "0", NO_SIDE, undefined, 2, last=False),
            mbo_event(3, Action.FILL, "1", BUY, price, 2, last=False),
            mbo_event(4, Action.CANCEL, "1", BUY, price, 2, last=True),
            mbo_event(5, Action.CLEAR, "0", NO_SIDE, undefined, 0, last=True),
            mbo_event(6, Action.NONE, "0", NO_SIDE, undefined, 0, last=True),
        ]
        rows = checked("mbp-1", events)
        ts = DBN_BASE, DBN_BASE - 5000
        assert rows == [
            (*ts, "ES", "T", "N", None, 2, 2, 0, level(price, None, 3, None, 1, None)),
            (*ts, "ES", "C", "B", price, 2, 4, 0, level(price, None, 1, None, 1, None)),
            (*ts, "ES", "R", "N", None, 0, 5, 0, EMPTY),
        ]

    def test_a_trade_print_changes_no_book(self) -> None:
        """Databento's T and F change nothing; the fills' cancels do."""
        events = [
            mbo_event(1, Action.ADD, "1", SELL, 10**9, 3),
            mbo_event(2, Action.PRINT, "0", BUY, 10**9, 3),
        ]
        assert [(r.action, r.levels) for r in checked("mbp-1", events)] == [
            ("A", level(None, 10**9, None, 3, None, 1)),
            ("T", level(None, 10**9, None, 3, None, 1)),
        ]


class TestGaps:
    def test_a_gap_flags_each_instruments_next_row(self) -> None:
        """Flag 4 on the first row of each instrument after a gap, once; an instrument's first
        row covers every gap before it."""
        events = [
            csv_event(1, Action.ADD, "b", BUY, 10**9, 1, name="A"),
            csv_event(3, Action.ADD, "c", BUY, 2 * 10**9, 1, name="A"),  # a gap before seq 3
            csv_event(4, Action.ADD, "d", BUY, 3 * 10**9, 1, name="A"),
            csv_event(5, Action.ADD, "b", BUY, 10**9, 1, name="B"),
        ]
        rows = checked("mbp-1", events, frozenset({3}))
        assert [(r.instrument, r.sequence, r.flags) for r in rows] == [
            ("A", 1, 0),
            ("A", 3, 4),
            ("A", 4, 0),
            ("B", 5, 4),
        ]


class TestSampledRows:
    def test_an_interval_ends_at_the_first_event_past_it(self) -> None:
        """bbo-1s: one row per instrument with an event in the second, by name (bytes), at the
        second's end, with its last event's ts_event and sequence and its last trade; a row
        without a trade has no action, side, price or size; an earlier time counts in the
        current second."""
        s = 10**9
        events = [
            mbo_event(1, Action.ADD, "1", BUY, 10 * s, 1, name="b", at=100),
            mbo_event(2, Action.PRINT, "0", SELL, 11 * s, 7, name="b", at=200),
            mbo_event(3, Action.ADD, "1", SELL, 12 * s, 1, name="a", at=s - 1),
            mbo_event(4, Action.ADD, "2", BUY, 10 * s, 2, name="b", at=s + 5),  # the next second
            mbo_event(
                5, Action.ADD, "3", BUY, 9 * s, 2, name="b", at=s - 50
            ),  # back: counted in it
        ]
        rows = checked("bbo-1s", events)
        end = (DBN_BASE // s + 1) * s
        assert rows == [
            (
                end,
                DBN_BASE + s - 1 - 5000,
                "a",
                "",
                "",
                None,
                None,
                3,
                0,
                level(None, 12 * s, None, 1, None, 1),
            ),
            (
                end,
                DBN_BASE + 200 - 5000,
                "b",
                "T",
                "A",
                11 * s,
                7,
                2,
                0,
                level(10 * s, None, 1, None, 1, None),
            ),
            (
                end + s,
                DBN_BASE + s - 50 - 5000,
                "b",
                "",
                "",
                None,
                None,
                5,
                0,
                level(10 * s, None, 3, None, 2, None),
            ),
        ]

    def test_a_boundary_inside_a_venue_event(self) -> None:
        """An interval that ends inside a venue event shows the levels at its last end (the
        records after it are not shown), and the next interval shows the venue event whole."""
        s = 10**9
        events = [
            mbo_event(1, Action.ADD, "1", BUY, 10 * s, 1, at=100),
            mbo_event(2, Action.ADD, "2", BUY, 11 * s, 1, at=200, last=False),
            mbo_event(3, Action.ADD, "3", BUY, 12 * s, 1, at=s + 1),
        ]
        rows = checked("bbo-1s", events)
        assert [(r.sequence, r.levels[:1]) for r in rows] == [(2, (10 * s,)), (3, (12 * s,))]

    def test_the_gap_before_the_closing_event_is_on_the_intervals_rows(self) -> None:
        """The gap declared before the event that passes an interval's end is flagged on that
        interval's rows; that event's own anomaly belongs to the next interval."""
        s = 10**9
        events = [
            mbo_event(1, Action.ADD, "1", BUY, 10 * s, 1, at=100),
            mbo_event(3, Action.CANCEL, "9", BUY, 10 * s, 1, at=s + 1),  # unknown order
        ]
        rows = checked("bbo-1s", events, frozenset({3}))
        assert [(r.sequence, r.flags) for r in rows] == [(1, 4), (3, 8)]


class TestRowFormatter:
    def test_known_rows_as_csv(self) -> None:
        """Integers for times and counts, §2's shortest prices, empty fields for what a row
        lacks, an instrument quoted when it holds a comma."""
        mbp1 = RowFormatter(SCHEMAS["mbp-1"], with_instrument=True)
        assert mbp1.header() == (
            "ts_recv,ts_event,instrument,action,side,price,size,sequence,flags,"
            "bid_px_00,ask_px_00,bid_sz_00,ask_sz_00,bid_ct_00,ask_ct_00\n"
        )
        rows = [
            Row(
                1,
                2,
                "ES,H1",
                "T",
                "B",
                229_130_000_000,
                5,
                7,
                9,
                (228_200_000_000, 229_000_000_000, 3, 4, 1, 2),
            ),
            Row(3, 3, "a", "C", "A", None, None, 8, 0, (-1_500_000_000, None, 1, None, 1, None)),
            Row(60_000_000_000, 4, "é", "", "", None, None, 9, 2, EMPTY),
        ]
        assert mbp1.format(rows) == (
            '1,2,"ES,H1",T,B,229.13,5,7,9,228.2,229,3,4,1,2\n'
            "3,3,a,C,A,,,8,0,-1.5,,1,,1,\n"
            "60000000000,4,é,,,,,9,2,,,,,,\n"
        )

    def test_mbp10_columns_without_instrument(self) -> None:
        """Six columns per level, 00 to 09, after the event's nine... eight fields."""
        names = csv_columns(SCHEMAS["mbp-10"], False)
        assert names[:8] == [
            "ts_recv",
            "ts_event",
            "action",
            "side",
            "price",
            "size",
            "sequence",
            "flags",
        ]
        assert names[8:14] == [
            "bid_px_00",
            "ask_px_00",
            "bid_sz_00",
            "ask_sz_00",
            "bid_ct_00",
            "ask_ct_00",
        ]
        assert names[-1] == "ask_ct_09" and len(names) == 8 + 60
        row = Row(
            1, 1, "", "A", "B", 10**9, 1, 1, 0, (10**9, None, 1, None, 1, None) + (None,) * 54
        )
        assert (
            RowFormatter(SCHEMAS["mbp-10"]).format([row])
            == "1,1,A,B,1,1,1,0,1,,1,,1," + ",,,,,," * 9 + "\n"
        )
