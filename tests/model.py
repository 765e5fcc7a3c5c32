"""Small, obviously-correct models of SPEC §1-3, §9 and §14 for tests: dicts of orders, scanned."""

from __future__ import annotations

from collections.abc import Collection, Iterable

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


# -- SPEC §14: the output schemas ------------------------------------------------------------------

UNDEF_PRICE = 2**63 - 1  # Databento's "undefined" price: a row shows no price
# (levels shown per side, trade rows, book rows, sampling interval in ns) per schema of rows
SCHEMA_SHAPES = {
    "mbp-1": (1, True, True, 0),
    "mbp-10": (10, True, True, 0),
    "tbbo": (1, True, False, 0),
    "bbo-1s": (1, False, False, 10**9),
    "bbo-1m": (1, False, False, 60 * 10**9),
}
ACTION_LETTERS = {
    Action.ADD: "A",
    Action.UPDATE: "M",
    Action.DELETE: "C",
    Action.TRADE: "T",
    Action.CANCEL: "C",
    Action.CLEAR: "R",
    Action.NONE: "N",
    Action.PRINT: "T",
    Action.FILL: "F",
}
SIDE_LETTERS = {Side.BUY: "B", Side.SELL: "A", Side.NONE: "N"}
TRADES = (Action.TRADE, Action.PRINT)  # L3 CSV TRADE, Databento T: the trade rows


def csv_time_ns(text: str) -> int:
    """An L3 CSV time (``2021-08-03 01:00:03.22333 UTC``) in ns since the epoch."""
    import calendar
    import time

    whole, _, fraction = text.removesuffix(" UTC").partition(".")
    seconds = calendar.timegm(time.strptime(whole, "%Y-%m-%d %H:%M:%S"))
    return seconds * 10**9 + int(fraction.ljust(9, "0"))


class ModelDepth:
    """One instrument's orders, keyed by (order_id, side); its levels found by sorting them all."""

    def __init__(self) -> None:
        self.orders: dict[tuple[str, int], tuple[int, int]] = {}

    def apply(self, action: int, oid: str, side: int, price: int, qty: int) -> bool:
        """SPEC §1, §3, §12 on this book; whether §14's flag 8 counts it (an anomaly)."""
        key = (oid, side)
        live = key in self.orders
        anomaly = False
        if action in (Action.ADD, Action.UPDATE):
            anomaly = live if action == Action.ADD else not live
            self.orders[key] = (price, qty)
        elif action == Action.DELETE:
            anomaly = not live
            self.orders.pop(key, None)
        elif action in (Action.TRADE, Action.CANCEL):
            if not live:
                return True
            old_price, old_qty = self.orders[key]
            # §3: a TRADE larger than the resting qty is an anomaly; §12/§14 count a cancel's
            # unknown order only
            anomaly = action == Action.TRADE and qty > old_qty
            self.orders[key] = (old_price, old_qty - qty)
        elif action == Action.CLEAR:
            self.orders.clear()
        if key in self.orders and self.orders[key][1] <= 0:
            del self.orders[key]
        return anomaly

    def side_levels(self, side: int) -> list[tuple[int, int, int]]:
        """(price, summed qty, order count) of each level of a side, best first."""
        levels: dict[int, tuple[int, int]] = {}
        for (_, s), (price, qty) in self.orders.items():
            if s == side:
                size, count = levels.get(price, (0, 0))
                levels[price] = (size + qty, count + 1)
        best_first = sorted(levels, reverse=side == BUY)
        return [(price, *levels[price]) for price in best_first]

    def levels(self, depth: int) -> tuple[int | None, ...]:
        """The ``depth`` best levels as §14's columns: bid_px, ask_px, bid_sz, ask_sz, bid_ct,
        ask_ct per level; None where a side has fewer levels."""
        bids, asks = self.side_levels(BUY), self.side_levels(SELL)
        out: list[int | None] = []
        for i in range(depth):
            bid = bids[i] if i < len(bids) else (None, None, None)
            ask = asks[i] if i < len(asks) else (None, None, None)
            out += [bid[0], ask[0], bid[1], ask[1], bid[2], ask[2]]
        return tuple(out)


def crossing_flags(levels: tuple[int | None, ...]) -> int:
    bid, ask = levels[0], levels[1]
    if bid is None or ask is None:
        return 0
    return 1 if bid > ask else 2 if bid == ask else 0


def model_schema_rows(
    schema: str,
    events: list[Event],
    gaps: Collection[int] = (),
    keep: Collection[str] | None = None,
) -> list[tuple]:
    """The rows SPEC §14 writes for ``events`` (already in order), as tuples of `Row`'s fields.

    ``gaps``: the seqs before which the resequencer declared a gap. The choices where §14 is
    silent: an instrument without a row compares with an empty book; a gap counts for the rows
    of the event after it; a sampled interval ends before the event that passes it is applied
    (the gap before that event is on the interval's rows, its anomaly is not); a sampled row
    shows its instrument's levels at its last venue-event end; the intervals follow kept
    instruments' events only."""
    depth, trade_rows, book_rows, interval = SCHEMA_SHAPES[schema]
    empty = (None,) * (6 * depth)
    books: dict[str, ModelDepth] = {}
    levels_now: dict[str, tuple[int | None, ...]] = {}  # each book's levels as they stand

    # Every event, in order: what the rows need of it (kept events only get a book).
    steps = []
    for e in events:
        kept = keep is None or e.instrument in keep
        ts_recv = csv_time_ns(e.time) if isinstance(e.time, str) else e.time
        ts_event = ts_recv if isinstance(e.time, str) else e.ts_event
        before = after = empty
        anomaly = False
        if kept:
            book = books.setdefault(e.instrument, ModelDepth())
            before = levels_now.get(e.instrument, empty)
            anomaly = book.apply(e.action, e.order_id, e.side, e.price, e.qty)
            after = levels_now[e.instrument] = book.levels(depth)
        steps.append((e, kept, e.seq in gaps, ts_recv, ts_event, before, after, anomaly))

    def price_size(e: Event) -> tuple[int | None, int | None]:
        if e.action == Action.DELETE:
            return None, None
        return (None if e.price == UNDEF_PRICE else e.price), e.qty

    rows: list[tuple] = []
    if not interval:
        shown: dict[str, tuple[int | None, ...]] = {}
        gaps_seen = 0
        gaps_at_row: dict[str, int] = {}
        anomaly_since: dict[str, bool] = {}

        def row(e: Event, ts_recv: int, ts_event: int, levels: tuple[int | None, ...]) -> None:
            name = e.instrument
            flags = crossing_flags(levels)
            flags |= 4 if gaps_seen > gaps_at_row.get(name, 0) else 0
            flags |= 8 if anomaly_since.get(name) else 0
            rows.append(
                (
                    ts_recv,
                    ts_event,
                    name,
                    ACTION_LETTERS[e.action],
                    SIDE_LETTERS[e.side],
                    *price_size(e),
                    e.seq,
                    flags,
                    levels,
                )
            )
            shown[name], gaps_at_row[name], anomaly_since[name] = levels, gaps_seen, False

        for e, kept, gap, ts_recv, ts_event, before, after, anomaly in steps:
            gaps_seen += gap
            if not kept:
                continue
            if e.action in TRADES and trade_rows:
                row(e, ts_recv, ts_event, before)
            anomaly_since[e.instrument] = anomaly_since.get(e.instrument, False) or anomaly
            if e.last and book_rows and after != shown.get(e.instrument, empty):
                row(e, ts_recv, ts_event, after)
        return rows

    # Sampled: the kept events cut into intervals, in order: each event in the interval of its
    # ts_recv, or in the current one if that is later (a time that went back).
    groups: list[tuple[int, list[int]]] = []  # (interval, indices of its events)
    for i, (_, kept, _, ts_recv, *_) in enumerate(steps):
        if kept:
            k = ts_recv // interval if not groups else max(ts_recv // interval, groups[-1][0])
            if groups and groups[-1][0] == k:
                groups[-1][1].append(i)
            else:
                groups.append((k, [i]))
    gaps_upto = []  # gaps declared before each event, or before one earlier
    for _, _, gap, *_ in steps:
        gaps_upto.append((gaps_upto[-1] if gaps_upto else 0) + gap)
    boundary: dict[str, tuple[int | None, ...]] = {}  # levels at its last venue-event end
    anomaly_since: dict[str, bool] = {}
    gaps_at_row: dict[str, int] = {}
    for n, (k, members) in enumerate(groups):
        last_of: dict[str, int] = {}
        trade_of: dict[str, Event] = {}
        for i in members:
            e, _, _, _, _, _, after, anomaly = steps[i]
            last_of[e.instrument] = i
            if e.action in TRADES:
                trade_of[e.instrument] = e
            if e.last:
                boundary[e.instrument] = after
            anomaly_since[e.instrument] = anomaly_since.get(e.instrument, False) or anomaly
        # written before the next interval's first event is applied (the gap declared before
        # that event counts), else at the end of the input
        gaps_now = gaps_upto[groups[n + 1][1][0]] if n + 1 < len(groups) else gaps_upto[-1]
        for name in sorted(last_of, key=lambda n: n.encode()):
            last_event, ts_event = steps[last_of[name]][0], steps[last_of[name]][4]
            levels = boundary.get(name, empty)
            flags = crossing_flags(levels)
            flags |= 4 if gaps_now > gaps_at_row.get(name, 0) else 0
            flags |= 8 if anomaly_since[name] else 0
            gaps_at_row[name], anomaly_since[name] = gaps_now, False
            trade = trade_of.get(name)
            rows.append(
                (
                    (k + 1) * interval,
                    ts_event,
                    name,
                    "T" if trade else "",
                    SIDE_LETTERS[trade.side] if trade else "",
                    *(price_size(trade) if trade else (None, None)),
                    last_event.seq,
                    flags,
                    levels,
                )
            )
    return rows
