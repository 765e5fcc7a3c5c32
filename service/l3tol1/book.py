"""The order book: SPEC §1 (actions), §3 (anomalies), and the BBO and write rule of §2.

Orders are kept per side by order_id (an order is the pair (order_id, side)); price levels per side
map a price to the summed qty of its orders. The best price of each side is the top of a heap of
level prices, and the top is always a live level: when the best level empties, stale entries are
popped from the top at once. A level removed below the top leaves its price in the heap ("lazy
deletion") until it surfaces, and the heap is rebuilt when stale entries outnumber live ones, so
every change costs O(log n) amortised, nothing ever scans all levels, and the BBO is read in O(1).

`OrderBook.apply_events` is the hot loop of the service: it applies a batch of events and writes
the L1 rows, with the level and heap updates written out inline rather than as method calls (a
call costs about as much as the update itself). `OrderBook.apply` runs the same loop on one event,
so there is one implementation of the rules, which tests/test_book.py checks against a model.
"""

from __future__ import annotations

from heapq import heapify, heappop, heappush
from typing import Any

from l3tol1.events import ADD, BUY, DELETE, TRADE, UPDATE, Event, Row

__all__ = ["Anomaly", "Bbo", "OrderBook"]

# (bid_price, ask_price, bid_size, ask_size)
Bbo = tuple[float, float, int, int]


class Anomaly:
    """Names of the SPEC §3 anomalies, as counted and logged."""

    ADD_LIVE = "add_of_live_order"
    UPDATE_UNKNOWN = "update_of_unknown_order"
    DELETE_UNKNOWN = "delete_of_unknown_order"
    TRADE_UNKNOWN = "trade_of_unknown_order"
    TRADE_EXCEEDS = "trade_exceeds_resting_qty"


# A stale-heap rebuild is worth it once the heap is this much bigger than the live level count.
_COMPACT_SLACK = 1024
# Heap keys are price * sign: bids are stored negated so both heaps are min-heaps, better first.
_SIGN = (-1.0, 1.0)  # indexed by side: BUY, SELL
_ADD_OR_UPDATE = (ADD, UPDATE)


class OrderBook:
    """Live orders and price levels of one instrument. Synchronous, no I/O."""

    __slots__ = ("_heaps", "_levels", "_orders", "anomalies")

    def __init__(self) -> None:
        # Index 0 is BUY, 1 is SELL. Orders: order_id -> (price, qty).
        self._orders: tuple[dict[str, tuple[float, int]], ...] = ({}, {})
        self._levels: tuple[dict[float, int], ...] = ({}, {})
        self._heaps: tuple[list[float], ...] = ([], [])
        self.anomalies: dict[str, int] = {}

    def apply(self, action: int, order_id: str, side: int, price: float, qty: int) -> str | None:
        """Apply one event; return the name of the anomaly it showed, if any (SPEC §3)."""
        found: list[tuple[str, Event]] = []
        self.apply_events([(0, action, order_id, side, price, qty, "", 0, "")], None, [], found)
        return found[0][0] if found else None

    def apply_events(
        self,
        events: list[Event],
        last: Bbo | None,
        rows: list[Row],
        anomalies: list[tuple[str, Event]],
    ) -> Bbo | None:
        """Apply events in order and return the last BBO written (SPEC §2).

        After each event, an L1 row is appended to ``rows`` when both sides are non-empty and
        (bid, ask, bid size, ask size) differs from ``last``, the last row written (which the
        row then becomes). A one-sided or empty book writes nothing; a crossed book is written.
        Each anomaly is counted in the `anomalies` attribute and appended, with its event, to
        the ``anomalies`` list.

        The BBO is only read after an event that touched the best level of its side (or the
        level that was best). Any other event changes a deeper level of a side that keeps its
        best, so it leaves the BBO, and whether the book is two-sided, as they were; and after
        the previous read of a two-sided book, ``last`` already equals its BBO. The first event
        of a batch is always read, so that this holds whatever the book and ``last`` handed in.
        """
        # Per side, everything an event on that side uses, fetched with one lookup.
        by_side = tuple(zip(self._orders, self._levels, self._heaps, _SIGN, strict=True))
        bids, asks = self._levels
        bid_heap, ask_heap = self._heaps
        counts = self.anomalies

        def note(kind: str, event: Event) -> None:  # rare: a call is fine here
            counts[kind] = counts.get(kind, 0) + 1
            anomalies.append((kind, event))

        # The last row written, as four locals; None never equals a price or a size.
        if last is None:
            last_bid = last_ask = last_bid_size = last_ask_size = None
        else:
            last_bid, last_ask, last_bid_size, last_ask_size = last
        read_next = True  # read the BBO after the next event, touched or not

        for event in events:
            seq, action, order_id, side, price, qty, time, _line, _raw = event
            orders, levels, heap, sign = by_side[side]
            old = orders.get(order_id)
            # First the order itself; `take` is what comes off the level at `old_price`, `put`
            # what goes onto the level at `price`.
            take = put = 0
            if action in _ADD_OR_UPDATE:
                # The order is now (price, qty), whatever it was before.
                if old is not None:
                    old_price, take = old
                    if action == ADD:
                        note(Anomaly.ADD_LIVE, event)
                elif action == UPDATE:
                    note(Anomaly.UPDATE_UNKNOWN, event)
                if qty > 0:
                    orders[order_id] = (price, qty)
                    put = qty
                elif old is not None:
                    # An UPDATE to qty 0 leaves nothing resting (a zero-qty ADD is rejected
                    # by the parser).
                    del orders[order_id]
            elif action == DELETE:
                if old is None:
                    note(Anomaly.DELETE_UNKNOWN, event)
                else:
                    del orders[order_id]
                    old_price, take = old
            elif action == TRADE:  # subtract from the resting order, remove it at zero or below
                if old is None:
                    note(Anomaly.TRADE_UNKNOWN, event)
                else:
                    old_price, old_qty = old
                    if qty >= old_qty:
                        if qty > old_qty:
                            note(Anomaly.TRADE_EXCEEDS, event)
                        del orders[order_id]
                        take = old_qty
                    elif qty > 0:
                        orders[order_id] = (old_price, old_qty - qty)
                        take = qty
            else:  # pragma: no cover - the parser only makes the four actions
                raise ValueError(f"unknown action {action!r}")

            # Then its price levels, the old qty off first (a replacement at the same price may
            # empty the level and fill it again). `touched`: the level is, or was, the best.
            touched = read_next
            if take:
                key = old_price * sign
                size = levels[old_price] - take
                if size > 0:
                    levels[old_price] = size
                    if heap[0] == key:
                        touched = True
                else:
                    del levels[old_price]
                    if heap[0] == key:
                        touched = True
                        # The best level went: pop until the top is a live level again.
                        heappop(heap)
                        while heap and heap[0] * sign not in levels:
                            heappop(heap)
            if put:
                key = price * sign
                size = levels.get(price)
                if size is not None:
                    levels[price] = size + put
                else:
                    levels[price] = put
                    heappush(heap, key)
                    if len(heap) > 2 * len(levels) + _COMPACT_SLACK:
                        self._rebuild_heap(side)
                if heap[0] == key:
                    touched = True

            # The write rule. Both heap tops are live, so the BBO is two lookups away.
            if touched and bid_heap and ask_heap:
                read_next = False
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
                    last_bid, last_ask, last_bid_size, last_ask_size = bid, ask, bid_size, ask_size
                    rows.append((time, seq, bid, ask, bid_size, ask_size))

        if last_bid is None:
            return None
        return (last_bid, last_ask, last_bid_size, last_ask_size)  # type: ignore[return-value]

    def best_bid(self) -> tuple[float, int] | None:
        """The highest BUY price and its summed qty, or None if there are no bids."""
        heap = self._heaps[BUY]
        if not heap:
            return None
        price = -heap[0]
        return price, self._levels[BUY][price]

    def best_ask(self) -> tuple[float, int] | None:
        """The lowest SELL price and its summed qty, or None if there are no asks."""
        heap = self._heaps[1]
        if not heap:
            return None
        price = heap[0]
        return price, self._levels[1][price]

    def __len__(self) -> int:
        """The number of live orders on both sides."""
        return len(self._orders[0]) + len(self._orders[1])

    def level_count(self) -> int:
        """The number of non-empty price levels on both sides."""
        return len(self._levels[0]) + len(self._levels[1])

    def _rebuild_heap(self, side: int) -> None:
        # In place: apply_events holds on to the list.
        sign = _SIGN[side]
        heap = [price * sign for price in self._levels[side]]
        heapify(heap)
        self._heaps[side][:] = heap

    # -- checkpointing -------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The book as plain data: live orders per side and the anomaly counters."""
        return {
            "orders": [
                [[oid, price, qty] for oid, (price, qty) in orders.items()]
                for orders in self._orders
            ],
            "anomalies": dict(self.anomalies),
        }

    @classmethod
    def restore(cls, state: dict[str, Any]) -> OrderBook:
        """Rebuild a book from `snapshot` output; insertion order of orders is preserved."""
        book = cls()
        for side, orders in enumerate(state["orders"]):
            levels = book._levels[side]
            for oid, price, qty in orders:
                price, qty = float(price), int(qty)
                book._orders[side][oid] = (price, qty)
                levels[price] = levels.get(price, 0) + qty
            book._rebuild_heap(side)
        book.anomalies = {str(k): int(v) for k, v in state["anomalies"].items()}
        return book
