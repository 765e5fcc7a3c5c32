"""Generator of synthetic Databento MBO files (DBN, plain or zstd) for tests and the benchmark.

Each book (publisher, instrument) starts with a clear and a snapshot of resting orders, then
random adds, modifies, partial and full cancels, trades and fills, grouped into venue events
whose last record alone carries ``F_LAST``; now and then a bad record (an unknown action, a side
``N`` on an add, an add without a price). Symbology maps each instrument_id to a symbol, one of
them changing symbol on the second day.

The metadata is encoded by ``databento_dbn`` itself; records are packed with ``struct`` in the
layout of ``bytes(databento_dbn.MBOMsg(...))`` (tests check the two give the same bytes), which
is a hundred times faster for the millions of records the benchmark needs.

Usage: ``python bench/generate_mbo.py --records 1M [--zstd] [--instruments 50] -o OUT.dbn[.zst]``
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import NamedTuple

import databento_dbn as dbn

RECORD = struct.Struct("<BBHIQQqIBBccQiI")
F_LAST, F_SNAPSHOT = 0x80, 0x20
UNDEF_PRICE = 2**63 - 1
START = datetime(2023, 12, 25, 22, 0, tzinfo=UTC)
SYMBOLS = {1001: "ESH4", 1002: "NQH4", 1003: "OLDSYM", 1004: "CLG4"}
RENAMED = {1003: "NEWSYM"}  # from the second day on


def symbols_of(instruments: int) -> dict[int, str]:
    """The symbols of ``instruments`` instrument_ids: `SYMBOLS` first, then ``SYM005``..."""
    extra = {1000 + i: f"SYM{i:03d}" for i in range(len(SYMBOLS) + 1, instruments + 1)}
    return dict(list(SYMBOLS.items())[:instruments]) | extra


class Mbo(NamedTuple):
    """One MBO record, with the fields a book needs (the others are filled in when packed)."""

    publisher_id: int
    instrument_id: int
    order_id: int
    price: int
    size: int
    flags: int
    action: str
    side: str
    ts_recv: int
    sequence: int
    ts_event: int | None = None  # None: 1 µs before ts_recv


def ts_event_of(record: Mbo) -> int:
    return record.ts_recv - 1000 if record.ts_event is None else record.ts_event


def pack(record: Mbo) -> bytes:
    """The record's 56 bytes, as ``bytes(databento_dbn.MBOMsg(...))`` makes them."""
    return RECORD.pack(
        14, 160, record.publisher_id, record.instrument_id, ts_event_of(record),
        record.order_id, record.price, record.size, record.flags, 0,
        record.action.encode(), record.side.encode(), record.ts_recv, 1000, record.sequence,
    )  # fmt: skip


def encoded(record: Mbo) -> bytes:
    """The same record encoded by databento_dbn (slow: for checking `pack`)."""
    return bytes(
        dbn.MBOMsg(
            record.publisher_id, record.instrument_id, ts_event_of(record), record.order_id,
            record.price, record.size, dbn.Action(record.action), dbn.Side(record.side),
            record.ts_recv, flags=record.flags, channel_id=0, ts_in_delta=1000,
            sequence=record.sequence,
        )
    )  # fmt: skip


def metadata(
    days: int = 2,
    symbols: dict[int, str] | None = None,
    *,
    version: int | None = None,
    ts_out: bool = False,
) -> bytes:
    """DBN metadata (encoded by databento_dbn): MBO, symbols mapped to instrument_ids by date
    (none with ``symbols={}``, as a live session records it); DBN ``version`` (the newest by
    default), records with ``ts_out`` or not."""
    symbols = SYMBOLS if symbols is None else symbols
    first = START.date()
    end = first + timedelta(days=days)
    by_symbol: dict[str, list[SimpleNamespace]] = {}
    for instrument_id, symbol in symbols.items():
        changes = [(first, symbol)]
        if instrument_id in RENAMED and days > 1:
            changes.append((first + timedelta(days=1), RENAMED[instrument_id]))
        for i, (start, name) in enumerate(changes):
            stop = changes[i + 1][0] if i + 1 < len(changes) else end
            interval = SimpleNamespace(start_date=start, end_date=stop, symbol=str(instrument_id))
            by_symbol.setdefault(name, []).append(interval)
    mappings = [SimpleNamespace(raw_symbol=s, intervals=i) for s, i in by_symbol.items()]
    return bytes(
        dbn.Metadata(
            dataset="GLBX.MDP3",
            schema=dbn.Schema.MBO,
            start=int(START.timestamp()) * 10**9,
            stype_in=dbn.SType.RAW_SYMBOL,
            stype_out=dbn.SType.INSTRUMENT_ID,
            end=int((START + timedelta(days=days)).timestamp()) * 10**9,
            symbols=sorted(by_symbol),
            partial=[],
            not_found=[],
            mappings=mappings,
            ts_out=ts_out,
            **({} if version is None else {"version": version}),
        ).encode()
    )


def records(
    count: int,
    seed: int = 1,
    publishers: tuple[int, ...] = (1,),
    bad_every: int = 0,
    symbols: dict[int, str] | None = None,
) -> Iterator[Mbo]:
    """``count`` records of consistent books over two days, in venue events (the books of
    ``symbols``' instrument_ids, `SYMBOLS` by default)."""
    rng = random.Random(f"l3tol1-mbo:{seed}")
    rand = rng.random
    books = [(p, i) for p in publishers for i in (SYMBOLS if symbols is None else symbols)]
    orders: dict[tuple[int, int], dict[int, list]] = {b: {} for b in books}
    mids = {b: 4700 * 10**9 + int(rand() * 200) * 25 * 10**7 for b in books}
    sequence = dict.fromkeys(publishers, 1)
    next_id = 10_000
    ts = int(START.timestamp()) * 10**9 + 1_000_000
    step = 2 * 86_400 * 10**9 // max(count, 1)  # two days of records
    made = 0
    pending: list[Mbo] = []

    def record(book: tuple[int, int], order_id: int, price: int, size: int, flags: int,
               action: str, side: str) -> None:  # fmt: skip
        publisher, instrument_id = book
        pending.append(Mbo(publisher, instrument_id, order_id, price, size, flags, action, side,
                           ts, sequence[publisher]))  # fmt: skip
        sequence[publisher] += 1

    for book in books:  # each book: a clear, then a snapshot of resting orders
        record(book, 0, UNDEF_PRICE, 0, F_SNAPSHOT, "R", "N")
        for k in range(6):
            next_id += 1
            side = "B" if k % 2 else "A"
            price = mids[book] + (-1 if side == "B" else 1) * (1 + int(rand() * 8)) * 25 * 10**7
            size = 1 + int(rand() * 50)
            orders[book][next_id] = [side, price, size]
            record(book, next_id, price, size, F_SNAPSHOT | (F_LAST if k == 5 else 0), "A", side)
    while made < count:
        for one in pending:
            if made == count:
                return
            yield one
            made += 1
        pending.clear()
        ts += int(step * rand() * 2) + 1
        book = books[int(rand() * len(books))]
        live = orders[book]
        if bad_every and rand() * bad_every < 1:
            kind = int(rand() * 3)
            if kind == 0:
                record(book, 1, mids[book], 1, F_LAST, "X", "B")  # unknown action
            elif kind == 1:
                record(book, 1, mids[book], 1, F_LAST, "A", "N")  # add without a side
            else:
                record(book, 1, UNDEF_PRICE, 1, F_LAST, "A", "B")  # add without a price
            continue
        parts = 1 + int(rand() * rand() * 4)  # records in this venue event
        for part in range(parts):
            last = F_LAST if part == parts - 1 else 0
            roll = rand()
            if len(live) > 40:  # keep books a realistic size: cancel rather than add
                roll = 0.4 + roll * 0.35
            if roll < 0.4 or len(live) < 4:
                next_id += 1
                side = "B" if rand() < 0.5 else "A"
                away = (1 + int(rand() * rand() * 20)) * 25 * 10**7
                price = mids[book] - away if side == "B" else mids[book] + away
                size = 1 + int(rand() * 100)
                live[next_id] = [side, price, size]
                record(book, next_id, price, size, last, "A", side)
            elif roll < 0.75:
                order_id = list(live)[int(rand() * len(live))]
                side, price, size = live[order_id]
                gone = size if rand() < 0.6 else 1 + int(rand() * size)
                if gone >= size:
                    del live[order_id]
                else:
                    live[order_id][2] = size - gone
                record(book, order_id, price, gone, last, "C", side)
            elif roll < 0.85:
                order_id = list(live)[int(rand() * len(live))]
                side, price, size = live[order_id]
                price += int(rand() * 5 - 2) * 25 * 10**7
                size = 1 + int(rand() * 100)
                live[order_id] = [side, price, size]
                record(book, order_id, price, size, last, "M", side)
            elif roll < 0.95:
                order_id = list(live)[int(rand() * len(live))]
                side, price, size = live[order_id]
                record(book, 0, price, 1, 0, "T", "B" if side == "A" else "A")
                record(book, order_id, price, 1, 0, "F", side)
                if size <= 1:
                    del live[order_id]
                    record(book, order_id, price, 1, last, "C", side)
                else:
                    live[order_id][2] = size - 1
                    record(book, order_id, price, 1, last, "C", side)
            else:
                record(book, 0, UNDEF_PRICE, 0, last, "N", "N")
            if rand() < 0.01:
                mids[book] += int(rand() * 3 - 1) * 25 * 10**7


def write(
    path: str,
    count: int,
    *,
    seed: int = 1,
    zstd: bool = False,
    symbols: dict[int, str] | None = None,
    **kwargs: object,
) -> None:
    """A DBN file of ``count`` records (zstd-compressed with ``zstd``), of the books of
    ``symbols`` (`SYMBOLS` by default)."""
    body = b"".join(pack(r) for r in records(count, seed, symbols=symbols, **kwargs))  # type: ignore[arg-type]
    data = metadata(symbols=symbols) + body
    if zstd:
        import zstandard

        data = zstandard.ZstdCompressor(level=3).compress(data)
    with open(path, "wb") as out:
        out.write(data)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    from generate import parse_count  # bench/ is on the path when run as a script

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=parse_count, required=True, help="records, e.g. 1M")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--zstd", action="store_true", help="compress with zstd")
    parser.add_argument("--publishers", type=int, default=1, help="publishers of each book")
    parser.add_argument("--bad-every", type=int, default=0, help="a bad record in about N")
    parser.add_argument(
        "--instruments", type=int, default=len(SYMBOLS), help="instrument_ids of each publisher"
    )
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args(argv)
    publishers = tuple(range(1, args.publishers + 1))
    write(
        args.output,
        args.records,
        seed=args.seed,
        zstd=args.zstd,
        publishers=publishers,
        bad_every=args.bad_every,
        symbols=symbols_of(args.instruments),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
