"""A small, obviously-correct model of SPEC §1-3 for tests: a dict of orders, scanned for BBO."""

from __future__ import annotations

from l3tol1.events import ADD, BUY, DELETE, TRADE, UPDATE, Event

Bbo = tuple[float, float, int, int]


class ModelBook:
    """Orders keyed by (order_id, side); the best prices found by scanning every order."""

    def __init__(self) -> None:
        self.orders: dict[tuple[str, int], tuple[float, int]] = {}
        self.anomalies: dict[str, int] = {}

    def _count(self, kind: str) -> None:
        self.anomalies[kind] = self.anomalies.get(kind, 0) + 1

    def apply(self, action: int, oid: str, side: int, price: float, qty: int) -> None:
        key = (oid, side)
        live = key in self.orders
        if action == ADD:
            if live:
                self._count("add_of_live_order")
            self.orders[key] = (price, qty)
        elif action == UPDATE:
            if not live:
                self._count("update_of_unknown_order")
            self.orders[key] = (price, qty)
        elif action == DELETE:
            if not live:
                self._count("delete_of_unknown_order")
            self.orders.pop(key, None)
        elif action == TRADE:
            if not live:
                self._count("trade_of_unknown_order")
                return
            old_price, old_qty = self.orders[key]
            if qty > old_qty:
                self._count("trade_exceeds_resting_qty")
            self.orders[key] = (old_price, old_qty - qty)
        if key in self.orders and self.orders[key][1] <= 0:
            del self.orders[key]

    def side_best(self, side: int) -> tuple[float, int] | None:
        prices = [p for (_, s), (p, _) in self.orders.items() if s == side]
        if not prices:
            return None
        best = max(prices) if side == BUY else min(prices)
        size = sum(q for (_, s), (p, q) in self.orders.items() if s == side and p == best)
        return best, size

    def bbo(self) -> Bbo | None:
        bid, ask = self.side_best(BUY), self.side_best(1 - BUY)
        if bid is None or ask is None:
            return None
        return bid[0], ask[0], bid[1], ask[1]


def model_rows(events: list[Event]) -> list[tuple[int, Bbo]]:
    """(seq, bbo) of each L1 row SPEC §2 writes for events sorted by seq (first copy wins)."""
    seen: set[int] = set()
    ordered = []
    for event in events:
        if event[0] not in seen:
            seen.add(event[0])
            ordered.append(event)
    ordered.sort(key=lambda e: e[0])
    book = ModelBook()
    last: Bbo | None = None
    rows = []
    for seq, action, oid, side, price, qty, *_ in ordered:
        book.apply(action, oid, side, price, qty)
        bbo = book.bbo()
        if bbo is not None and bbo != last:
            rows.append((seq, bbo))
            last = bbo
    return rows
