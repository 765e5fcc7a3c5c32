"""The output schemas of SPEC §14: Databento's L1 family (MBP-1, MBP-10, TBBO, BBO-1s/1m) from
the same ordered events as the L1 rows, in one place.

    Schema    what a schema writes: its levels, trade rows, book rows, sampling interval
    Row       one output row: times, the event's fields, flags, the levels
    DepthBook one instrument's orders and price levels with their order counts, best first
    Depths    every instrument's DepthBook and the row rules (the books step of a schema)

The rules, as `Depths.apply` runs them for each event of a kept instrument:

1. a gap declared before the event (the resequencer skipped seqs, SPEC §5) marks every
   instrument: flag 4 on its next row;
2. sampled schemas: an event at or past the current interval's end first writes the interval's
   rows (one per instrument that had an event in it, by name), then opens its own interval; an
   earlier time counts in the current interval;
3. a trade (L3 CSV ``TRADE``, Databento ``T``) writes a trade row with the levels before it
   (``mbp-1``, ``mbp-10``, ``tbbo``);
4. the event is applied to its book as the L1 books apply it (the same anomalies: flag 8);
5. after an event that ends a venue event (every CSV row, a DBN record with ``F_LAST``): a book
   row when the shown levels differ from the instrument's previous row (``mbp-*``); the levels
   a sampled row will show (``bbo-*``).

The previous row of an instrument that has none shows an empty book: a first event that leaves
the book empty writes nothing. Prices are the books' integers (1e-9); a row's price or size is
None when its event has none (an L3 CSV DELETE; Databento's undefined price).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from l3tol1.core.book import SIGN, live_orders
from l3tol1.core.instruments import InstrumentState
from l3tol1.core.numbers import format_price
from l3tol1.core.plain import PlainReader, columns, int64, natural
from l3tol1.core.records import Action, Anomaly, Event

__all__ = [
    "FLAG_ANOMALY",
    "FLAG_CROSSED",
    "FLAG_GAP",
    "FLAG_LOCKED",
    "SCHEMAS",
    "DepthBook",
    "Depths",
    "DepthsState",
    "Row",
    "RowFormatter",
    "Sample",
    "Schema",
    "TimeNs",
    "schema_named",
]


class Schema(NamedTuple):
    """What one schema writes (SPEC §14)."""

    name: str
    depth: int  # levels shown per side; 0: the L1 rows of §2 (not rows of this module)
    trades: bool  # a trade row before each trade
    books: bool  # a book row after each change of the shown levels
    interval: int  # ns: sampled rows per interval of ts_recv; 0: not sampled

    @property
    def rows(self) -> bool:
        """Whether the schema's rows are `Row`s (every schema but ``l1``)."""
        return self.depth > 0


SCHEMAS = {
    s.name: s
    for s in (
        Schema("l1", 0, False, False, 0),
        Schema("mbp-1", 1, True, True, 0),
        Schema("mbp-10", 10, True, True, 0),
        Schema("tbbo", 1, True, False, 0),
        Schema("bbo-1s", 1, False, False, 1_000_000_000),
        Schema("bbo-1m", 1, False, False, 60_000_000_000),
    )
}


def schema_named(name: str) -> Schema:
    """The schema of a name of `SCHEMAS` (KeyError otherwise)."""
    return SCHEMAS[name]


FLAG_CROSSED = 1
FLAG_LOCKED = 2
FLAG_GAP = 4
FLAG_ANOMALY = 8

# An event's action as the rows write it, indexed by `Action`: L3 CSV's DELETE is a cancel, its
# TRADE a trade; Databento's actions are their own letters.
ACTION_CHARS = ("A", "M", "C", "T", "C", "R", "N", "T", "F")
SIDE_CHARS = ("B", "A", "N")
_TRADES = (int(Action.TRADE), int(Action.PRINT))
_DELETE = int(Action.DELETE)
_UNDEF_PRICE = 2**63 - 1  # Databento's undefined price: no price

Levels = tuple[int | None, ...]  # per level: bid_px, ask_px, bid_sz, ask_sz, bid_ct, ask_ct


class Row(NamedTuple):
    """One row of a schema (SPEC §14). ``levels`` holds six values per level, in the columns'
    order (None: that side has fewer levels)."""

    ts_recv: int
    ts_event: int
    instrument: str
    action: str  # "" on a sampled row without a trade
    side: str
    price: int | None
    size: int | None
    sequence: int
    flags: int
    levels: Levels


def empty_levels(depth: int) -> Levels:
    return (None,) * (6 * depth)


class TimeNs:
    """An event's times in ns since the epoch: Databento's are already; an L3 CSV time
    (``2021-08-03 01:00:03.22333 UTC``) is converted, its second's start cached (bounded)."""

    def __init__(self) -> None:
        self._seconds: dict[str, int] = {}

    def __call__(self, time: str | int) -> int:
        if isinstance(time, int):
            return time
        second = time[:19]
        base = self._seconds.get(second)
        if base is None:
            if len(self._seconds) > 1 << 16:
                self._seconds.clear()
            stamp = datetime.fromisoformat(second).replace(tzinfo=UTC)
            base = self._seconds[second] = int(stamp.timestamp()) * 1_000_000_000
        fraction = time[20:-4]
        return base + (int(fraction.ljust(6, "0")) * 1000 if fraction else 0)


class DepthBook:
    """One instrument's live orders and price levels, each level with its order count, and the
    level prices of each side kept sorted best first, so that the N best are a slice away.

    Keys are price * `SIGN` (bids negated), ascending: the best level first on both sides.
    """

    __slots__ = ("keys", "levels", "orders")

    def __init__(self) -> None:
        self.orders: tuple[dict[str, tuple[int, int]], dict[str, tuple[int, int]]] = ({}, {})
        """Per side: order_id -> (price, qty)."""
        self.levels: tuple[dict[int, list[int]], dict[int, list[int]]] = ({}, {})
        """Per side: price -> [summed qty, order count]."""
        self.keys: tuple[list[int], list[int]] = ([], [])
        """Per side: the level prices times `SIGN`, ascending (best first)."""

    def clear(self) -> None:
        for part in (*self.orders, *self.levels, *self.keys):
            part.clear()

    def put(self, side: int, price: int, qty: int) -> None:
        """``qty`` of one more order at ``price``."""
        level = self.levels[side].get(price)
        if level is None:
            self.levels[side][price] = [qty, 1]
            insort(self.keys[side], price * SIGN[side])
        else:
            level[0] += qty
            level[1] += 1

    def take(self, side: int, price: int, qty: int, *, gone: bool) -> None:
        """``qty`` off the level at ``price``; ``gone``: one order fewer there."""
        levels = self.levels[side]
        level = levels[price]
        level[0] -= qty
        if gone:
            level[1] -= 1
        if level[1] == 0:
            del levels[price]
            keys = self.keys[side]
            del keys[bisect_left(keys, price * SIGN[side])]

    def shown(self, depth: int) -> Levels:
        """The ``depth`` best levels of both sides, in the columns' order."""
        out: list[int | None] = []
        bid_keys, ask_keys = self.keys
        bids, asks = self.levels
        none = (None, None)
        for i in range(depth):
            bid_px = -bid_keys[i] if i < len(bid_keys) else None
            ask_px = ask_keys[i] if i < len(ask_keys) else None
            bid = none if bid_px is None else bids[bid_px]
            ask = none if ask_px is None else asks[ask_px]
            out += (bid_px, ask_px, bid[0], ask[0], bid[1], ask[1])
        return tuple(out)

    def __len__(self) -> int:
        return len(self.orders[0]) + len(self.orders[1])

    def live_orders(self) -> list[tuple[int, str, int, int]]:
        """Every live order as (side, order_id, price, qty), in insertion order per side."""
        return live_orders(self.orders)

    @classmethod
    def from_orders(cls, orders: Iterable[tuple[int, str, int, int]]) -> DepthBook:
        book = cls()
        for side, order_id, price, qty in orders:
            book.orders[side][order_id] = (price, qty)
            book.put(side, price, qty)
        return book


class Sample(NamedTuple):
    """What a sampled row will show of one instrument's events in the current interval."""

    ts_event: int
    sequence: int
    ts_recv: int  # of its last event: names a Databento book on that day
    trade: tuple[str, int | None, int | None] | None  # side, price, size of its last trade


class Depth:
    """One instrument: its book, its previous row's levels, its marks since that row, the levels
    at its last venue-event end, and its sample in the current interval (``bbo-*``)."""

    __slots__ = ("anomaly", "book", "boundary", "gaps", "keyed", "name", "sample", "shown")

    def __init__(self, name: str, depth: int, gaps: int, *, keyed: bool) -> None:
        self.name = name
        self.keyed = keyed  # a Databento book: ``name`` is its key, its rows named by day
        self.book = DepthBook()
        self.shown = empty_levels(depth)  # of its previous row
        self.boundary = self.shown  # after its last event that ended a venue event
        self.gaps = gaps  # the gap count its previous row covered
        self.anomaly = False  # an anomaly since its previous row
        self.sample: Sample | None = None


@dataclass(slots=True)
class DepthState:
    """One instrument of `DepthsState`."""

    book: InstrumentState  # its name, orders (`last`: unused, None)
    shown: list[int | None]
    boundary: list[int | None]
    gaps: int
    anomaly: bool
    sample: list[Any] | None  # a `Sample` as a list
    keyed: bool = False  # a Databento book, named by day


@dataclass(slots=True)
class DepthsState:
    """`Depths` as plain data, for the checkpoint."""

    schema: str
    depths: list[DepthState] = field(default_factory=list)
    anomalies: dict[str, int] = field(default_factory=dict)
    applied: int = 0
    skipped: int = 0
    crossed: int = 0
    locked: int = 0
    last_seq: int | None = None
    gaps: int = 0
    interval: int | None = None  # the current interval's index (sampled schemas)

    def to_plain(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "books": [
                {
                    "name": d.book.name,
                    "orders": columns(d.book.orders, ("side", "order_id", "price", "qty")),
                    "shown": d.shown,
                    "boundary": d.boundary,
                    "gaps": d.gaps,
                    "anomaly": d.anomaly,
                    "sample": d.sample,
                    "keyed": d.keyed,
                }
                for d in self.depths
            ],
            "anomalies": self.anomalies,
            "counters": {name: getattr(self, name) for name in _COUNTERS},
            "last_seq": self.last_seq,
            "gaps": self.gaps,
            "interval": self.interval,
        }

    @classmethod
    def from_plain(cls, obj: Any, where: str, read: PlainReader) -> DepthsState:
        """The state `to_plain` gave, checked whole.

        :raises PlainDataError: a value is missing or of the wrong type.
        """
        name = read.string(obj, "schema", where)
        if name not in SCHEMAS or not SCHEMAS[name].rows:
            read.fail(f"{where}.schema", "not a schema of rows")
        width = 6 * SCHEMAS[name].depth
        books = read.get(obj, "books", where)
        if not isinstance(books, list):
            read.fail(f"{where}.books", "not a list")
        counters = read.get(obj, "counters", where)
        return cls(
            schema=name,
            depths=[_depth(b, f"{where}.books[{i}]", read, width) for i, b in enumerate(books)],
            anomalies=read.counts(obj, "anomalies", where),
            last_seq=read.integer(obj, "last_seq", where, null=True),
            gaps=read.integer(obj, "gaps", where),
            interval=read.integer(obj, "interval", where, null=True),
            **{name: read.integer(counters, name, f"{where}.counters") for name in _COUNTERS},
        )


_COUNTERS = ("applied", "skipped", "crossed", "locked")


def _depth(obj: Any, where: str, read: PlainReader, width: int) -> DepthState:
    from l3tol1.core.instruments import _book

    book = _book({**obj, "last": None} if isinstance(obj, dict) else obj, where, read)
    levels = []
    for key in ("shown", "boundary"):
        value = read.get(obj, key, where)
        if not (
            isinstance(value, list)
            and len(value) == width
            and all(v is None or int64(v) for v in value)
        ):
            read.fail(f"{where}.{key}", "not the levels of this schema")
        levels.append(value)
    anomaly = read.get(obj, "anomaly", where)
    if not isinstance(anomaly, bool):
        read.fail(f"{where}.anomaly", "not a boolean")
    sample = read.get(obj, "sample", where)
    if sample is not None and not _is_sample(sample):
        read.fail(f"{where}.sample", "not a sample")
    keyed = read.boolean(obj, "keyed", where)
    gaps = read.integer(obj, "gaps", where)
    return DepthState(book, levels[0], levels[1], gaps, anomaly, sample, keyed)


def _is_sample(value: Any) -> bool:
    if not (isinstance(value, list) and len(value) == 4):
        return False
    ts_event, sequence, ts_recv, trade = value
    if not (natural(ts_event) and natural(sequence) and natural(ts_recv)):
        return False
    return trade is None or (
        isinstance(trade, list)
        and len(trade) == 3
        and trade[0] in SIDE_CHARS
        and all(v is None or int64(v) for v in trade[1:])
    )


class Depths:
    """The books of every kept instrument, with order counts, and the rows of one schema.

    :param schema: a schema of rows (not ``l1``).
    :param keep: only these instruments get a book and rows (``--instruments``); None: all.
    :param kept: more instruments to keep, added while running (Databento's book keys).
    :param name: the name of an instrument's rows from its key and an event's ts_recv
        (Databento's books, named by day); None: the key is the name.
    """

    def __init__(
        self,
        schema: Schema,
        keep: Collection[str] | None = None,
        *,
        kept: Collection[str] | None = None,
        name: Callable[[str, int], str] | None = None,
    ) -> None:
        assert schema.rows
        self.schema = schema
        self.keep = None if keep is None else frozenset(keep)
        self.kept = kept if kept is not None else frozenset()
        self.name = name
        self.by_name: dict[str, Depth] = {}
        self.anomalies: dict[str, int] = {}
        self.applied = 0
        self.skipped = 0
        self.crossed = 0  # rows written with bid > ask
        self.locked = 0
        self.last_seq: int | None = None
        self.gaps = 0  # gaps declared so far
        self.interval: int | None = None  # the current interval (sampled schemas)
        self._ns = TimeNs()

    # -- the rules -----------------------------------------------------------------------------

    def apply(
        self,
        events: Iterable[Event],
        rows: list[Row],
        anomalies: list[tuple[str, Event]],
        gaps: Collection[int] = (),
    ) -> None:
        """Apply events in order; append the rows they write and the anomalies they show.
        ``gaps``: the seqs before which the resequencer declared a gap (SPEC §5)."""
        schema = self.schema
        depth, interval = schema.depth, schema.interval
        ns = self._ns
        count = skipped = 0
        for event in events:
            count += 1
            seq, action, key, _, side, price, qty, time, _, _, last, ts_event = event
            self.last_seq = seq
            if gaps and seq in gaps:
                self.gaps += 1
            d = self.by_name.get(key)
            if d is None:
                if not (self.keep is None or key in self.keep or key in self.kept):
                    skipped += 1
                    continue
                d = self.by_name[key] = Depth(key, depth, 0, keyed=type(time) is int)
            ts_recv = ns(time)
            if type(time) is str:  # an L3 CSV row: its time is both
                ts_event = ts_recv
            if interval:
                self._tick(ts_recv // interval, rows)
            trade = action in _TRADES
            if trade and schema.trades:
                self._row(d, ts_recv, ts_event, event, d.book.shown(depth), rows)
            self._apply(d, event, anomalies)
            if last:
                levels = d.book.shown(depth)
                d.boundary = levels
                if schema.books and levels != d.shown:
                    self._row(d, ts_recv, ts_event, event, levels, rows)
            if interval:
                old = d.sample
                if trade:
                    sampled: Any = (SIDE_CHARS[side], *_price_size(action, price, qty))
                else:
                    sampled = None if old is None else old.trade
                d.sample = Sample(ts_event, seq, ts_recv, sampled)
        self.applied += count - skipped
        self.skipped += skipped

    def finish(self, rows: list[Row]) -> None:
        """End of input (``--no-follow``): the current interval's rows."""
        if self.schema.interval and self.interval is not None:
            self._write_interval(rows)

    def mark_gap(self) -> None:
        """A gap declared here, between events (the JetStream roles' marks)."""
        self.gaps += 1

    def advance(self, ts_recv: int, rows: list[Row]) -> None:
        """The feed's clock reached ``ts_recv`` (ns) here, between events: an event of another
        instrument was applied elsewhere (a JetStream worker's partition learns it from the
        publisher's marks). Sampled schemas: the current interval's rows when ``ts_recv`` is at
        or past its end, as `apply` writes them before such an event; else nothing."""
        if self.schema.interval:
            self._tick(ts_recv // self.schema.interval, rows)

    def _tick(self, k: int, rows: list[Row]) -> None:
        """An event in interval ``k``: the current interval's rows when ``k`` is past it (an
        earlier ``k`` counts in the current interval)."""
        if self.interval is None:
            self.interval = k
        elif k > self.interval:
            self._write_interval(rows)
            self.interval = k

    def _row(
        self, d: Depth, ts_recv: int, ts_event: int, event: Event, levels: Levels, rows: list[Row]
    ) -> None:
        price, size = _price_size(event.action, event.price, event.qty)
        rows.append(
            Row(
                ts_recv,
                ts_event,
                self._name_of(d, ts_recv),
                ACTION_CHARS[event.action],
                SIDE_CHARS[event.side],
                price,
                size,
                event.seq,
                self._flags(d, levels),
                levels,
            )
        )
        d.shown = levels

    def _flags(self, d: Depth, levels: Levels) -> int:
        """The flags of the instrument's next row, which shows ``levels``; its marks restart."""
        flags = 0
        bid, ask = levels[0], levels[1]
        if bid is not None and ask is not None and bid >= ask:
            if bid > ask:
                flags = FLAG_CROSSED
                self.crossed += 1
            else:
                flags = FLAG_LOCKED
                self.locked += 1
        if d.gaps < self.gaps:
            flags |= FLAG_GAP
            d.gaps = self.gaps
        if d.anomaly:
            flags |= FLAG_ANOMALY
            d.anomaly = False
        return flags

    def _write_interval(self, rows: list[Row]) -> None:
        """The current interval's rows: one per instrument with an event in it, by name."""
        assert self.interval is not None
        end = (self.interval + 1) * self.schema.interval
        sampled = []
        for d in self.by_name.values():
            if d.sample is not None:
                sampled.append((self._name_of(d, d.sample.ts_recv).encode(), d))
        sampled.sort(key=lambda pair: pair[0])
        for name, d in sampled:
            sample = d.sample
            assert sample is not None
            side, price, size = sample.trade if sample.trade is not None else ("", None, None)
            rows.append(
                Row(
                    end,
                    sample.ts_event,
                    name.decode(),
                    "T" if sample.trade is not None else "",
                    side,
                    price,
                    size,
                    sample.sequence,
                    self._flags(d, d.boundary),
                    d.boundary,
                )
            )
            d.shown = d.boundary
            d.sample = None

    def _name_of(self, d: Depth, ts_recv: int) -> str:
        return self.name(d.name, ts_recv) if d.keyed and self.name is not None else d.name

    def _apply(self, d: Depth, event: Event, anomalies: list[tuple[str, Event]]) -> None:
        """One event on its book: as `Instruments.apply` does, with order counts."""
        action, order_id, side, price, qty = (
            event.action,
            event.order_id,
            event.side,
            event.price,
            event.qty,
        )
        book = d.book
        if action == Action.CLEAR:
            book.clear()
            return
        if action > Action.CANCEL:  # NONE, PRINT, FILL: no change
            return

        def note(kind: str, *, flagged: bool = True) -> None:
            self.anomalies[kind] = self.anomalies.get(kind, 0) + 1
            anomalies.append((kind, event))
            d.anomaly = d.anomaly or flagged

        orders = book.orders[side]
        old = orders.get(order_id)
        if action <= Action.UPDATE:
            if old is not None:
                if action == Action.ADD:
                    note(Anomaly.ADD_LIVE)
                book.take(side, old[0], old[1], gone=True)
                del orders[order_id]
            elif action == Action.UPDATE:
                note(Anomaly.UPDATE_UNKNOWN)
            if qty > 0:
                orders[order_id] = (price, qty)
                book.put(side, price, qty)
        elif action == Action.DELETE:
            if old is None:
                note(Anomaly.DELETE_UNKNOWN)
            else:
                del orders[order_id]
                book.take(side, old[0], old[1], gone=True)
        else:  # TRADE or CANCEL: subtract; the order goes at zero or below
            trade = action == Action.TRADE
            if old is None:
                note(Anomaly.TRADE_UNKNOWN if trade else Anomaly.CANCEL_UNKNOWN)
                return
            old_price, old_qty = old
            if qty >= old_qty:
                if qty > old_qty:
                    # counted as the L1 books count it, but flag 8 is §3's anomalies and, for
                    # Databento, "an add of a live order, a modify or cancel of an unknown one"
                    # (SPEC §14): a cancel larger than what rests is not among them
                    if trade:
                        note(Anomaly.TRADE_EXCEEDS)
                    else:
                        note(Anomaly.CANCEL_EXCEEDS, flagged=False)
                del orders[order_id]
                book.take(side, old_price, old_qty, gone=True)
            elif qty > 0:
                orders[order_id] = (old_price, old_qty - qty)
                book.take(side, old_price, qty, gone=False)

    # -- what the pipeline reads ---------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.by_name)

    def names(self) -> frozenset[str]:
        return frozenset(self.by_name)

    def book(self, name: str = "") -> DepthBook:
        d = self.by_name.get(name)
        return DepthBook() if d is None else d.book

    # -- checkpointing -------------------------------------------------------------------------

    def snapshot(self) -> DepthsState:
        return DepthsState(
            schema=self.schema.name,
            depths=[
                DepthState(
                    InstrumentState(d.name, d.book.live_orders(), None),
                    list(d.shown),
                    list(d.boundary),
                    d.gaps,
                    d.anomaly,
                    None if d.sample is None else [*d.sample[:3], _listed(d.sample.trade)],
                    d.keyed,
                )
                for d in self.by_name.values()
            ],
            anomalies=dict(self.anomalies),
            applied=self.applied,
            skipped=self.skipped,
            crossed=self.crossed,
            locked=self.locked,
            last_seq=self.last_seq,
            gaps=self.gaps,
            interval=self.interval,
        )

    def restore(self, state: DepthsState) -> None:
        depth = self.schema.depth
        self.by_name = {}
        for s in state.depths:
            d = Depth(s.book.name, depth, s.gaps, keyed=s.keyed)
            d.book = DepthBook.from_orders(s.book.orders)
            d.shown, d.boundary, d.anomaly = tuple(s.shown), tuple(s.boundary), s.anomaly
            if s.sample is not None:
                ts_event, sequence, ts_recv, trade = s.sample
                d.sample = Sample(ts_event, sequence, ts_recv, None if trade is None else (*trade,))
            self.by_name[d.name] = d
        self.anomalies = dict(state.anomalies)
        self.applied, self.skipped = state.applied, state.skipped
        self.crossed, self.locked = state.crossed, state.locked
        self.last_seq, self.gaps, self.interval = state.last_seq, state.gaps, state.interval


def _listed(trade: tuple[str, int | None, int | None] | None) -> list[Any] | None:
    return None if trade is None else list(trade)


def _price_size(action: int, price: int, qty: int) -> tuple[int | None, int | None]:
    """An event's price and size as a row shows them (None: the event has none)."""
    if action == _DELETE:
        return None, None
    return (None if price == _UNDEF_PRICE else price), qty


# -- CSV -------------------------------------------------------------------------------------------


_LEVEL_COLUMNS = ("bid_px", "ask_px", "bid_sz", "ask_sz", "bid_ct", "ask_ct")


def csv_columns(schema: Schema, with_instrument: bool) -> list[str]:
    """The column names of a schema's rows, in order."""
    names = ["ts_recv", "ts_event"]
    if with_instrument:
        names.append("instrument")
    names += ["action", "side", "price", "size", "sequence", "flags"]
    for i in range(schema.depth):
        names += [f"{c}_{i:02d}" for c in _LEVEL_COLUMNS]
    return names


_CACHE_LIMIT = 1 << 16


class RowFormatter:
    """A schema's rows as CSV lines (SPEC §14): integers, prices in §2's shortest decimal,
    empty fields for what a row does not have."""

    def __init__(self, schema: Schema, *, with_instrument: bool = False) -> None:
        self.schema = schema
        self.with_instrument = with_instrument
        self._prices: dict[int, str] = {}
        self._names: dict[str, str] = {}

    def header(self) -> str:
        return ",".join(csv_columns(self.schema, self.with_instrument)) + "\n"

    def format(self, rows: Iterable[Row]) -> str:
        prices = self._prices
        if len(prices) > _CACHE_LIMIT:
            prices.clear()

        def px(price: int | None) -> str:
            if price is None:
                return ""
            text = prices.get(price)
            if text is None:
                text = prices[price] = format_price(price)
            return text

        out = []
        for ts_recv, ts_event, instrument, action, side, price, size, seq, flags, levels in rows:
            head = f"{ts_recv},{ts_event},"
            if self.with_instrument:
                name = self._names.get(instrument)
                if name is None:
                    name = self._names[instrument] = _csv_field(instrument)
                head += name + ","
            fields = [f"{action},{side},{px(price)},{'' if size is None else size},{seq},{flags}"]
            for i in range(0, len(levels), 6):
                bid, ask, *rest = levels[i : i + 6]
                fields.append(
                    f"{px(bid)},{px(ask)}," + ",".join("" if v is None else str(v) for v in rest)
                )
            out.append(head + ",".join(fields) + "\n")
        return "".join(out)


def _csv_field(text: str) -> str:
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text
