"""One instrument's order book: live orders and price levels per side (SPEC §1-2).

Orders are kept per side by order_id (an order is (order_id, side) within its instrument); price
levels per side map a price to the summed qty of its orders. The best price of each side is the
top of a heap of level prices, and the top is always a live level: when the best level empties,
stale entries are popped from the top at once. A level removed below the top leaves its price in
the heap ("lazy deletion") until it surfaces, and the heap is rebuilt when stale entries
outnumber live ones, so every change costs O(log n) amortised, nothing ever scans all levels,
and the BBO is read in O(1).

The book is plain data: `Instruments.apply` (core/instruments.py) changes it in its hot loop,
where a method call per change would cost as much as the change itself.
"""

from __future__ import annotations

from heapq import heapify

from l3tol1.core.records import Side

__all__ = ["COMPACT_SLACK", "SIGN", "OrderBook", "live_orders"]

# Heap keys are price * sign: bids are stored negated so both heaps are min-heaps, better first.
SIGN = (-1, 1)  # indexed by side: BUY, SELL
# A stale-heap rebuild is worth it once the heap is this much bigger than the live level count.
COMPACT_SLACK = 1024


class OrderBook:
    """Live orders and price levels of one instrument. Synchronous, no I/O."""

    __slots__ = ("heaps", "levels", "orders")

    def __init__(self) -> None:
        # Index 0 is BUY, 1 is SELL.
        self.orders: tuple[dict[str, tuple[int, int]], dict[str, tuple[int, int]]] = ({}, {})
        """Per side: order_id -> (price, qty)."""
        self.levels: tuple[dict[int, int], dict[int, int]] = ({}, {})
        """Per side: price -> summed qty of the orders at it."""
        self.heaps: tuple[list[int], list[int]] = ([], [])
        """Per side: heap of level prices times `SIGN` (best first), stale entries below it."""

    def clear(self) -> None:
        """Remove every order (Databento's clear action, SPEC §12)."""
        for part in (*self.orders, *self.levels, *self.heaps):
            part.clear()

    def best_bid(self) -> tuple[int, int] | None:
        """The highest BUY price and its summed qty, or None if there are no bids."""
        heap = self.heaps[Side.BUY]
        if not heap:
            return None
        price = -heap[0]
        return price, self.levels[Side.BUY][price]

    def best_ask(self) -> tuple[int, int] | None:
        """The lowest SELL price and its summed qty, or None if there are no asks."""
        heap = self.heaps[Side.SELL]
        if not heap:
            return None
        price = heap[0]
        return price, self.levels[Side.SELL][price]

    def __len__(self) -> int:
        """The number of live orders on both sides."""
        return len(self.orders[0]) + len(self.orders[1])

    def level_count(self) -> int:
        """The number of non-empty price levels on both sides."""
        return len(self.levels[0]) + len(self.levels[1])

    def rebuild_heap(self, side: int) -> None:
        """Drop the stale entries of one side's heap (in place: the hot loop holds the list)."""
        sign = SIGN[side]
        heap = [price * sign for price in self.levels[side]]
        heapify(heap)
        self.heaps[side][:] = heap

    # -- checkpointing -------------------------------------------------------------------------

    def live_orders(self) -> list[tuple[int, str, int, int]]:
        """Every live order as (side, order_id, price, qty), in insertion order per side."""
        return live_orders(self.orders)

    @classmethod
    def from_orders(cls, orders: list[tuple[int, str, int, int]]) -> OrderBook:
        """The book holding these live orders (as `live_orders` returns them)."""
        book = cls()
        for side, order_id, price, qty in orders:
            book.orders[side][order_id] = (price, qty)
            levels = book.levels[side]
            levels[price] = levels.get(price, 0) + qty
        for side in (Side.BUY, Side.SELL):
            book.rebuild_heap(side)
        return book


def live_orders(
    orders: tuple[dict[str, tuple[int, int]], dict[str, tuple[int, int]]],
) -> list[tuple[int, str, int, int]]:
    """A book's orders by side as (side, order_id, price, qty), in insertion order per side (a
    checkpoint's form, shared by the L1 books and the schemas' books)."""
    return [
        (side, order_id, price, qty)
        for side, by_id in enumerate(orders)
        for order_id, (price, qty) in by_id.items()
    ]
