"""The order book: SPEC §1 (actions), §3 (anomalies) and the best prices of §2.

Orders are kept per side by order_id (an order is the pair (order_id, side)); price levels per side
map a price to the summed qty of its orders. The best price of each side is the top of a heap of
level prices. Removing a level leaves its price in the heap ("lazy deletion"); stale tops are
popped when the best price is asked for, and the heap is rebuilt when stale entries outnumber
live ones, so every change costs O(log n) amortised and nothing ever scans all levels.
"""

from __future__ import annotations

from heapq import heapify, heappop, heappush
from typing import Any

from l3tol1.events import ADD, BUY, DELETE, TRADE, UPDATE

__all__ = ["Anomaly", "OrderBook"]


class Anomaly:
    """Names of the SPEC §3 anomalies, as counted and logged."""

    ADD_LIVE = "add_of_live_order"
    UPDATE_UNKNOWN = "update_of_unknown_order"
    DELETE_UNKNOWN = "delete_of_unknown_order"
    TRADE_UNKNOWN = "trade_of_unknown_order"
    TRADE_EXCEEDS = "trade_exceeds_resting_qty"


# A stale-heap rebuild is worth it once the heap is this much bigger than the live level count.
_COMPACT_SLACK = 1024


class OrderBook:
    """Live orders and price levels of one instrument. Synchronous, no I/O."""

    __slots__ = ("_heaps", "_levels", "_orders", "anomalies")

    def __init__(self) -> None:
        # Index 0 is BUY, 1 is SELL. Orders: order_id -> (price, qty).
        self._orders: tuple[dict[str, tuple[float, int]], ...] = ({}, {})
        self._levels: tuple[dict[float, int], ...] = ({}, {})
        # Bids are stored negated so that both heaps are min-heaps of "better first".
        self._heaps: tuple[list[float], ...] = ([], [])
        self.anomalies: dict[str, int] = {}

    def apply(self, action: int, order_id: str, side: int, price: float, qty: int) -> str | None:
        """Apply one event; return the name of the anomaly it showed, if any (SPEC §3)."""
        orders = self._orders[side]
        old = orders.get(order_id)
        anomaly = None
        if action in (ADD, UPDATE):
            if old is not None:
                self._remove_qty(side, old[0], old[1])
                if action == ADD:
                    anomaly = Anomaly.ADD_LIVE
            elif action == UPDATE:
                anomaly = Anomaly.UPDATE_UNKNOWN
            if qty > 0:
                orders[order_id] = (price, qty)
                self._add_qty(side, price, qty)
            elif old is not None:
                # An UPDATE to qty 0 leaves nothing resting (a zero-qty ADD is rejected earlier).
                del orders[order_id]
        elif action == DELETE:
            if old is None:
                anomaly = Anomaly.DELETE_UNKNOWN
            else:
                del orders[order_id]
                self._remove_qty(side, old[0], old[1])
        elif action == TRADE:
            if old is None:
                anomaly = Anomaly.TRADE_UNKNOWN
            else:
                old_price, old_qty = old
                if qty >= old_qty:
                    if qty > old_qty:
                        anomaly = Anomaly.TRADE_EXCEEDS
                    del orders[order_id]
                    self._remove_qty(side, old_price, old_qty)
                elif qty > 0:
                    orders[order_id] = (old_price, old_qty - qty)
                    self._remove_qty(side, old_price, qty)
        else:  # pragma: no cover - the parser only makes the four actions
            raise ValueError(f"unknown action {action!r}")
        if anomaly is not None:
            self.anomalies[anomaly] = self.anomalies.get(anomaly, 0) + 1
        return anomaly

    def best_bid(self) -> tuple[float, int] | None:
        """The highest BUY price and its summed qty, or None if there are no bids."""
        levels = self._levels[BUY]
        heap = self._heaps[BUY]
        while heap:
            price = -heap[0]
            size = levels.get(price)
            if size is not None:
                return price, size
            heappop(heap)
        return None

    def best_ask(self) -> tuple[float, int] | None:
        """The lowest SELL price and its summed qty, or None if there are no asks."""
        levels = self._levels[1]
        heap = self._heaps[1]
        while heap:
            price = heap[0]
            size = levels.get(price)
            if size is not None:
                return price, size
            heappop(heap)
        return None

    def __len__(self) -> int:
        """The number of live orders on both sides."""
        return len(self._orders[0]) + len(self._orders[1])

    def level_count(self) -> int:
        """The number of non-empty price levels on both sides."""
        return len(self._levels[0]) + len(self._levels[1])

    def _add_qty(self, side: int, price: float, qty: int) -> None:
        levels = self._levels[side]
        size = levels.get(price)
        if size is None:
            levels[price] = qty
            heap = self._heaps[side]
            heappush(heap, -price if side == BUY else price)
            if len(heap) > 2 * len(levels) + _COMPACT_SLACK:
                self._rebuild_heap(side)
        else:
            levels[price] = size + qty

    def _remove_qty(self, side: int, price: float, qty: int) -> None:
        levels = self._levels[side]
        size = levels[price] - qty
        if size > 0:
            levels[price] = size
        else:
            del levels[price]

    def _rebuild_heap(self, side: int) -> None:
        sign = -1.0 if side == BUY else 1.0
        heap = [sign * price for price in self._levels[side]]
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
            for oid, price, qty in orders:
                book._orders[side][oid] = (float(price), int(qty))
                book._add_qty(side, float(price), int(qty))
        book.anomalies = {str(k): int(v) for k, v in state["anomalies"].items()}
        return book
