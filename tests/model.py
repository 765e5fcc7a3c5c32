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


def mbo_model_csv(records: Iterable, symbols: dict[int, str], renamed: dict[int, str]) -> str:
    """The L1 CSV SPEC §12 makes of MBO records, the naive way: one dict of orders per
    (publisher, instrument_id), both sides scanned after every record that ends a venue event.

    ``symbols``/``renamed``: an instrument's symbol on the first day, and on the second (the
    metadata maps two days, from the first record's; later records are named by their id).
    Items with a ``symbol`` among the records are in-band symbol mappings: an instrument the
    metadata does not map is named by the latest one met before its book's first record of a
    day; other items without an ``action`` are other records, passed over. Bad records (a time
    beyond 2^63 - 1, an unknown action, side N on A/M/C, an add or modify without a price) are
    skipped, as the service rejects them."""
    from datetime import UTC, datetime

    # An order is (order_id, side) within its book, as for every input (SPEC §1, §12).
    books: dict[tuple[int, int], dict[tuple[int, str], tuple[str, int, int]]] = {}
    last: dict[tuple[int, int], tuple[int, int, int, int]] = {}
    first_day: int | None = None
    first_publisher: int | None = None
    inband: dict[int, str] = {}
    names: dict[tuple[int, int, int], str] = {}  # (publisher, instrument_id, day) -> name
    lines = ["time,instrument,bid_price,ask_price,bid_size,ask_size,seq_num"]

    def price_text(p: int) -> str:
        sign = "-" if p < 0 else ""
        whole, frac = divmod(abs(p), 10**9)
        return sign + (f"{whole}.{frac:09d}".rstrip("0") if frac else str(whole))

    for r in records:
        if hasattr(r, "symbol"):
            inband[r.instrument_id] = r.symbol
            continue
        if not hasattr(r, "action") or r.ts_recv >= 2**63:  # other records; a bad time
            continue
        day = r.ts_recv // (86_400 * 10**9)
        first_day = day if first_day is None else first_day
        if r.action not in "AMCRTFN" or (r.action in "AMC" and r.side not in "BA"):
            continue
        if r.action in "AM" and r.price == 2**63 - 1:
            continue
        key = (r.publisher_id, r.instrument_id)
        first_publisher = r.publisher_id if first_publisher is None else first_publisher
        if (*key, day) not in names:  # a book's first record of a day names that day's rows
            symbol = inband.get(r.instrument_id, str(r.instrument_id))
            if day - first_day < 2 and r.instrument_id in symbols:  # the metadata's two days
                symbol = symbols[r.instrument_id]
                if day > first_day and r.instrument_id in renamed:
                    symbol = renamed[r.instrument_id]
            names[(*key, day)] = symbol if key[0] == first_publisher else f"{symbol}@{key[0]}"
        book = books.setdefault(key, {})
        order = (r.order_id, r.side)
        if r.action in "AM":
            book.pop(order, None)
            if r.size > 0:
                book[order] = (r.side, r.price, r.size)
        elif r.action == "C" and order in book:
            side, price, size = book[order]
            if r.size >= size:
                del book[order]
            else:
                book[order] = (side, price, size - r.size)
        elif r.action == "R":
            book.clear()
        if not r.flags & 0x80:
            continue
        bids = [(p, s) for side, p, s in book.values() if side == "B"]
        asks = [(p, s) for side, p, s in book.values() if side == "A"]
        if not bids or not asks:
            continue
        bid = max(p for p, _ in bids)
        ask = min(p for p, _ in asks)
        bbo = (bid, ask, sum(s for p, s in bids if p == bid), sum(s for p, s in asks if p == ask))
        if bbo == last.get(key):
            continue
        last[key] = bbo
        name = names[(*key, day)]
        seconds, fraction = divmod(r.ts_recv, 10**9)
        stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(
            f"{stamp}.{fraction:09d} UTC,{name},{price_text(bid)},{price_text(ask)},"
            f"{bbo[2]},{bbo[3]},{r.sequence}"
        )
    return "\n".join(lines) + "\n"
