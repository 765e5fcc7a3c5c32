"""Apply ordered events to one book per instrument and write L1 quotes: SPEC §1-3, §9, §12.

`Instruments.apply` is the hot loop of the Python core. For each event it updates the order and
its price levels inline, then applies the write rule of SPEC §2 to the event's instrument: after
an event that ends a venue event (every CSV row does; a Databento record with ``F_LAST``), a
quote is written when both sides are non-empty and (bid, ask, bid size, ask size) differs from
that instrument's last quote. A one-sided or empty book writes nothing; a crossed book is written.

Anomalies (SPEC §3) are applied, counted and reported, never fatal.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from heapq import heappop, heappush
from typing import Any

from l3tol1.core.book import COMPACT_SLACK, SIGN, OrderBook
from l3tol1.core.numbers import MAX_QTY
from l3tol1.core.plain import PlainReader, columns, int64, natural
from l3tol1.core.records import Action, Anomaly, Event, Quote, Side

__all__ = ["Bbo", "Instrument", "InstrumentState", "Instruments", "InstrumentsState"]

# (bid_price, ask_price, bid_size, ask_size)
Bbo = tuple[int, int, int, int]

_ADD, _UPDATE, _DELETE = int(Action.ADD), int(Action.UPDATE), int(Action.DELETE)
_TRADE, _CANCEL, _CLEAR = int(Action.TRADE), int(Action.CANCEL), int(Action.CLEAR)
# For the two subtracting actions: (anomaly of an unknown order, anomaly of too large a qty).
_SUBTRACT = {
    _TRADE: (Anomaly.TRADE_UNKNOWN, Anomaly.TRADE_EXCEEDS),
    _CANCEL: (Anomaly.CANCEL_UNKNOWN, Anomaly.CANCEL_EXCEEDS),
}
_new = tuple.__new__


class Instrument:
    """One instrument's book and the last quote written for it.

    ``dirty``: the BBO may differ from ``last``. It is set by an event that touched the best
    level of its side (or the level that was best) and cleared when the BBO is read; any other
    event changes a deeper level of a side that keeps its best, so it leaves the BBO, and whether
    the book is two-sided, as they were. A new or restored instrument starts dirty.
    """

    __slots__ = ("book", "dirty", "last", "name")

    def __init__(self, name: str, book: OrderBook | None = None, last: Bbo | None = None) -> None:
        self.name = name
        self.book = book if book is not None else OrderBook()
        self.last = last
        self.dirty = True


@dataclass(slots=True)
class InstrumentState:
    """One instrument as plain data, for the checkpoint."""

    name: str
    orders: list[tuple[int, str, int, int]]  # (side, order_id, price, qty), see OrderBook
    last: Bbo | None


@dataclass(slots=True)
class InstrumentsState:
    """`Instruments` as plain data, for the checkpoint (and a worker's state, SPEC §13)."""

    instruments: list[InstrumentState] = field(default_factory=list)
    anomalies: dict[str, int] = field(default_factory=dict)
    applied: int = 0
    skipped: int = 0
    crossed: int = 0
    locked: int = 0
    last_seq: int | None = None

    def to_plain(self) -> dict[str, Any]:
        """This state as plain data: each book's orders column by column."""
        return {
            "books": [
                {"name": i.name, "last": i.last, "orders": columns(i.orders, _ORDER_COLUMNS)}
                for i in self.instruments
            ],
            "anomalies": self.anomalies,
            "counters": {name: getattr(self, name) for name in _COUNTERS},
            "last_seq": self.last_seq,
        }

    @classmethod
    def from_plain(cls, obj: Any, where: str, read: PlainReader) -> InstrumentsState:
        """The state `to_plain` gave, checked whole.

        :raises PlainDataError: a value is missing, of the wrong type, or an order twice.
        """
        books = read.get(obj, "books", where)
        if not isinstance(books, list):
            read.fail(f"{where}.books", "not a list")
        counters = read.get(obj, "counters", where)
        return cls(
            instruments=[_book(b, f"{where}.books[{i}]", read) for i, b in enumerate(books)],
            anomalies=read.counts(obj, "anomalies", where),
            last_seq=read.integer(obj, "last_seq", where, null=True),
            **{name: read.integer(counters, name, f"{where}.counters") for name in _COUNTERS},
        )


_ORDER_COLUMNS = ("side", "order_id", "price", "qty")
_COUNTERS = ("applied", "skipped", "crossed", "locked")
_SIDES = frozenset(int(side) for side in Side)


def _book(obj: Any, where: str, read: PlainReader) -> InstrumentState:
    """One book of `InstrumentsState.from_plain` (prices are any int64: Databento's may be
    negative, SPEC §12)."""
    name = read.string(obj, "name", where)
    last = read.get(obj, "last", where)
    if last is not None and not (
        isinstance(last, list)
        and len(last) == 4
        and int64(last[0])
        and int64(last[1])
        and all(natural(v) for v in last[2:])
    ):
        read.fail(f"{where}.last", "not a quote")
    orders = read.columns(
        obj,
        "orders",
        where,
        (
            ("side", lambda v: type(v) is int and v in _SIDES),
            ("order_id", lambda v: isinstance(v, str)),
            ("price", int64),
            ("qty", lambda v: natural(v) and 0 < v <= MAX_QTY),
        ),
    )
    if len({(side, order_id) for side, order_id, _, _ in orders}) != len(orders):
        read.fail(f"{where}.orders", "an order appears twice")
    return InstrumentState(name, orders, None if last is None else (*last,))


class Instruments:
    """The books of every instrument seen, and the counters of applying events to them.

    :param keep: only these instruments get a book and quotes (``--instruments``); the events
        of the others are counted in ``skipped`` and otherwise ignored. None keeps all.
    :param kept: more instruments to keep, added while running (Databento's books are kept by
        key, which the MBO parser adds here when it meets a kept name).
    """

    def __init__(
        self, keep: Collection[str] | None = None, *, kept: Collection[str] | None = None
    ) -> None:
        self.keep = None if keep is None else frozenset(keep)
        self.kept = kept if kept is not None else frozenset()
        self.by_name: dict[str, Instrument] = {}
        self.anomalies: dict[str, int] = {}
        self.applied = 0  # events applied to a book
        self.skipped = 0  # events of instruments not kept
        self.crossed = 0  # quotes written with bid > ask
        self.locked = 0  # quotes written with bid == ask
        self.last_seq: int | None = None

    def apply(
        self, events: list[Event], quotes: list[Quote], anomalies: list[tuple[str, Event]]
    ) -> None:
        """Apply events in order; append the quotes they write and the anomalies they show."""
        if not events:
            return
        counts = self.anomalies
        by_name = self.by_name
        keep = self.keep
        kept = self.kept
        crossed = locked = skipped = 0

        def note(kind: str, event: Event) -> None:  # rare: a call is fine here
            counts[kind] = counts.get(kind, 0) + 1
            anomalies.append((kind, event))

        # The current instrument's state lives in locals; it is stored back on a switch (a
        # feed of one instrument never switches).
        current: Instrument | None = None
        name: str | None = None
        book = OrderBook()
        orders_by_side, levels_by_side, heaps = book.orders, book.levels, book.heaps
        bids, asks = levels_by_side
        bid_heap, ask_heap = heaps
        last_bid = last_ask = last_bid_size = last_ask_size = None
        dirty = True

        for event in events:
            seq, action, instrument, order_id, side, price, qty, time, _line, _raw, ends, _ = event
            if instrument != name:
                if current is not None:
                    current.dirty = dirty
                    if last_bid is not None:
                        current.last = (last_bid, last_ask, last_bid_size, last_ask_size)  # type: ignore[assignment]
                name = instrument
                current = by_name.get(instrument)
                if current is None and (keep is None or instrument in keep or instrument in kept):
                    current = by_name[instrument] = Instrument(instrument)
                if current is None:
                    skipped += 1
                    continue
                book = current.book
                orders_by_side, levels_by_side, heaps = book.orders, book.levels, book.heaps
                bids, asks = levels_by_side
                bid_heap, ask_heap = heaps
                if current.last is None:
                    last_bid = last_ask = last_bid_size = last_ask_size = None
                else:
                    last_bid, last_ask, last_bid_size, last_ask_size = current.last
                dirty = current.dirty
            elif current is None:
                skipped += 1
                continue

            if action == _CLEAR:  # Databento's clear: no order of its own
                book.clear()
                dirty = True
            elif action <= _CANCEL:  # NONE changes nothing
                orders = orders_by_side[side]
                levels = levels_by_side[side]
                heap = heaps[side]
                sign = SIGN[side]
                old = orders.get(order_id)
                # First the order itself; `take` is what comes off the level at `old_price`,
                # `put` what goes onto the level at `price`.
                take = put = 0
                if action <= _UPDATE:  # ADD or UPDATE: the order is now (price, qty)
                    if old is not None:
                        old_price, take = old
                        if action == _ADD:
                            note(Anomaly.ADD_LIVE, event)
                    elif action == _UPDATE:
                        note(Anomaly.UPDATE_UNKNOWN, event)
                    if qty > 0:
                        orders[order_id] = (price, qty)
                        put = qty
                    elif old is not None:
                        # An UPDATE to qty 0 leaves nothing resting (a zero-qty ADD is
                        # rejected by the parser).
                        del orders[order_id]
                elif action == _DELETE:
                    if old is None:
                        note(Anomaly.DELETE_UNKNOWN, event)
                    else:
                        del orders[order_id]
                        old_price, take = old
                else:  # TRADE or CANCEL: subtract; the order goes at zero or below
                    unknown, exceeds = _SUBTRACT[action]
                    if old is None:
                        note(unknown, event)
                    else:
                        old_price, old_qty = old
                        if qty >= old_qty:
                            if qty > old_qty:
                                note(exceeds, event)
                            del orders[order_id]
                            take = old_qty
                        elif qty > 0:
                            orders[order_id] = (old_price, old_qty - qty)
                            take = qty

                # Then its price levels, the old qty off first (a replacement at the same price
                # may empty the level and fill it again). A level that is or was best: dirty.
                if take:
                    key = old_price * sign
                    size = levels[old_price] - take
                    if size > 0:
                        levels[old_price] = size
                        if heap[0] == key:
                            dirty = True
                    else:
                        del levels[old_price]
                        if heap[0] == key:
                            dirty = True
                            # The best level went: pop until the top is a live level again.
                            heappop(heap)
                            while heap and heap[0] * sign not in levels:
                                heappop(heap)
                if put:
                    key = price * sign
                    level = levels.get(price)
                    if level is not None:
                        levels[price] = level + put
                    else:
                        levels[price] = put
                        heappush(heap, key)
                        if len(heap) > 2 * len(levels) + COMPACT_SLACK:
                            book.rebuild_heap(side)
                    if heap[0] == key:
                        dirty = True

            # The write rule. Both heap tops are live, so the BBO is two lookups away.
            if ends and dirty:
                dirty = False
                if bid_heap and ask_heap:
                    bid = -bid_heap[0]
                    ask = ask_heap[0]
                    bid_size = bids[bid]
                    ask_size = asks[ask]
                    if (
                        bid != last_bid
                        or ask != last_ask
                        or bid_size != last_bid_size
                        or ask_size != last_ask_size
                    ):
                        last_bid, last_ask = bid, ask
                        last_bid_size, last_ask_size = bid_size, ask_size
                        quotes.append(
                            _new(Quote, (time, instrument, bid, ask, bid_size, ask_size, seq))
                        )
                        if bid >= ask:
                            if bid > ask:
                                crossed += 1
                            else:
                                locked += 1

        if current is not None:
            current.dirty = dirty
            if last_bid is not None:
                current.last = (last_bid, last_ask, last_bid_size, last_ask_size)  # type: ignore[assignment]
        self.applied += len(events) - skipped
        self.skipped += skipped
        self.crossed += crossed
        self.locked += locked
        self.last_seq = events[-1].seq

    def __len__(self) -> int:
        """How many instruments have a book."""
        return len(self.by_name)

    def names(self) -> frozenset[str]:
        """The instruments that have a book: kept, and met in an applied event."""
        return frozenset(self.by_name)

    def book(self, name: str = "") -> OrderBook:
        """The book of one instrument (an empty one if it has none yet)."""
        instrument = self.by_name.get(name)
        return OrderBook() if instrument is None else instrument.book

    def heap_sizes(self, name: str = "") -> tuple[int, int]:
        """The lengths of an instrument's two heaps (stale entries included): (bids, asks)."""
        book = self.book(name)
        return len(book.heaps[0]), len(book.heaps[1])

    def last_quote(self, name: str = "") -> Bbo | None:
        """The last quote written for an instrument: (bid, ask, bid size, ask size), or None."""
        instrument = self.by_name.get(name)
        return None if instrument is None else instrument.last

    # -- checkpointing -------------------------------------------------------------------------

    def snapshot(self) -> InstrumentsState:
        """Every book, last quote and counter as plain data."""
        return InstrumentsState(
            instruments=[
                InstrumentState(i.name, i.book.live_orders(), i.last) for i in self.by_name.values()
            ],
            anomalies=dict(self.anomalies),
            applied=self.applied,
            skipped=self.skipped,
            crossed=self.crossed,
            locked=self.locked,
            last_seq=self.last_seq,
        )

    def restore(self, state: InstrumentsState) -> None:
        """Load a `snapshot`."""
        self.by_name = {
            i.name: Instrument(i.name, OrderBook.from_orders(i.orders), i.last)
            for i in state.instruments
        }
        self.anomalies = dict(state.anomalies)
        self.applied = state.applied
        self.skipped = state.skipped
        self.crossed = state.crossed
        self.locked = state.locked
        self.last_seq = state.last_seq
