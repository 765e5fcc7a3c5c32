"""Small, obviously-correct models of SPEC §1-3 and §9 for tests: dicts of orders, scanned."""

from __future__ import annotations

from collections.abc import Iterable

from l3tol1.core.records import Action, Event, Side

Bbo = tuple[int, int, int, int]
ADD, UPDATE, DELETE, TRADE = Action.ADD, Action.UPDATE, Action.DELETE, Action.TRADE
BUY, SELL = Side.BUY, Side.SELL


def ev(
    seq: int,
    action: int = ADD,
    order_id: str = "o",
    side: int = BUY,
    price: int = 1,
    qty: int = 1,
    *,
    instrument: str = "",
    time: str = "t",
    line: int | None = None,
    raw: str | None = None,
) -> Event:
    """An event with defaults for whatever a test does not care about."""
    return Event(
        seq,
        int(action),
        instrument,
        order_id,
        int(side),
        price,
        qty,
        time,
        seq if line is None else line,
        f"raw{seq}" if raw is None else raw,
        True,
    )


class ModelBook:
    """Orders keyed by (order_id, side); the best prices found by scanning every order."""

    def __init__(self) -> None:
        self.orders: dict[tuple[str, int], tuple[int, int]] = {}
        self.anomalies: dict[str, int] = {}

    def _count(self, kind: str) -> None:
        self.anomalies[kind] = self.anomalies.get(kind, 0) + 1

    def apply(self, action: int, oid: str, side: int, price: int, qty: int) -> None:
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

    def side_best(self, side: int) -> tuple[int, int] | None:
        prices = [p for (_, s), (p, _) in self.orders.items() if s == side]
        if not prices:
            return None
        best = max(prices) if side == BUY else min(prices)
        size = sum(q for (_, s), (p, q) in self.orders.items() if s == side and p == best)
        return best, size

    def bbo(self) -> Bbo | None:
        bid, ask = self.side_best(BUY), self.side_best(SELL)
        if bid is None or ask is None:
            return None
        return bid[0], ask[0], bid[1], ask[1]


def model_rows(events: Iterable[Event]) -> list[tuple[int, str, Bbo]]:
    """(seq, instrument, bbo) of each L1 row SPEC §2 and §9 write for ``events`` sorted by seq
    (the first copy of a seq wins), with one book and one last row per instrument."""
    seen: set[int] = set()
    ordered = []
    for event in events:
        if event.seq not in seen:
            seen.add(event.seq)
            ordered.append(event)
    ordered.sort(key=lambda e: e.seq)
    books: dict[str, ModelBook] = {}
    last: dict[str, Bbo] = {}
    rows = []
    for e in ordered:
        book = books.setdefault(e.instrument, ModelBook())
        book.apply(e.action, e.order_id, e.side, e.price, e.qty)
        bbo = book.bbo()
        if bbo is not None and bbo != last.get(e.instrument):
            rows.append((e.seq, e.instrument, bbo))
            last[e.instrument] = bbo
    return rows
