"""Generator of realistic synthetic L3 CSV streams for the benchmark.

The stream imitates the reference file (one instrument near 229, tick 0.01): mostly ADD and
DELETE, some UPDATEs that move price and qty, partial and full TRADEs against the first order
at the best level (and now and then one larger than the resting qty), order ids reused after a
delete (the delete-then-add "modify" pattern), the same order id live on BUY and SELL at once,
one-sided episodes, and a low rate of the anomalies of SPEC section 3.

The generator keeps its own book with the SPEC semantics so that every event refers to the
state the converter will see. Output is streamed; memory stays bounded for any length.

Many instruments (``--instruments N``): N such streams, each with its own book, interleaved at
random into one feed with a global ``seq_num`` and an ``instrument`` column first.

Usage: ``python bench/generate.py --events 1M --seed 1 --window 20 [--deep] [--instruments N]
-o OUT.csv``
"""

from __future__ import annotations

import argparse
import heapq
import os
import random
import sys
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime

HEADER = (
    "seq_num,add_order_id,add_side,add_price,add_qty,update_order_id,update_side,update_price,"
    "update_qty,delete_order_id,delete_side,trade_order_id,trade_side,trade_price,trade_qty,time\n"
)
SEQ_BASE = 1627942268920653171
ORDER_ID_BASE = 7457972527797789251
START_US = 1627952401_000000  # 2021-08-03 01:00:01 UTC, in microseconds
MID_TICK = 22900  # 229.00 in ticks of 0.01
SIDES = ("BUY", "SELL")

# Resting qty mix, shaped like the reference file (1000 and 300 dominate).
_QTY_TABLE = (
    [1000] * 50
    + [300] * 20
    + [45] * 5
    + [100] * 4
    + [500] * 4
    + [255] * 3
    + [5000] * 3
    + [50] * 3
    + [200] * 3
    + [10] * 2
    + [5] * 1
)

# Event mix. ADD and DELETE share what is left, steered towards the target book size.
_P_ANOMALY = 0.001
_P_UPDATE = 0.05
_P_TRADE = 0.04
_P_MODIFY = 0.25  # a DELETE followed at once by an ADD of the same id on the same side


class _Params:
    """Book shape: shallow like the reference file, or deep (thousands of levels)."""

    def __init__(self, deep: bool) -> None:
        self.deep = deep
        # Live orders the ADD/DELETE balance steers towards.
        self.target = 5000 if deep else 24
        # Share of ADDs placed uniformly far from the mid (deep only) and how far.
        self.p_far = 0.75 if deep else 0.03
        self.far_ticks = 3500 if deep else 100
        # One-sided episodes: chance per event, and length range in events.
        self.p_episode = 1e-6 if deep else 2e-5
        self.episode_len = (6000, 15000) if deep else (200, 3000)


def _price_text(tick: int) -> str:
    """Shortest decimal form of a price in ticks: 22900 -> 229, 22820 -> 228.2."""
    units, cents = divmod(tick, 100)
    if cents == 0:
        return str(units)
    if cents % 10 == 0:
        return f"{units}.{cents // 10}"
    return f"{units}.{cents:02d}"


def _rows(events: int, seed: int, deep: bool) -> Iterator[str]:
    """Yield ``events`` data rows in seq order (the row text, newline included)."""
    # A str seed is hashed deterministically (unlike a tuple), so the stream is reproducible.
    rng = random.Random(f"l3tol1-bench:{seed}:{int(deep)}")
    rand = rng.random
    prm = _Params(deep)
    target = prm.target
    qty_table = _QTY_TABLE
    n_qty = len(qty_table)

    # Book, per side (0 = BUY, 1 = SELL).
    orders: tuple[dict[str, list[int]], dict[str, list[int]]] = ({}, {})
    levels: tuple[dict[int, dict[str, None]], dict[int, dict[str, None]]] = ({}, {})
    live_ids: tuple[list[str], list[str]] = ([], [])  # for O(1) uniform choice
    live_pos: tuple[dict[str, int], dict[str, int]] = ({}, {})
    # Heaps of level ticks (BUY negated) with lazy deletion; in_heap stops duplicates so the
    # heaps stay bounded by the price range, not by the number of events.
    heaps: tuple[list[int], list[int]] = ([], [])
    in_heap: tuple[set[int], set[int]] = (set(), set())
    price_cache: dict[int, str] = {}
    recent: deque[str] = deque(maxlen=64)  # recently deleted ids, for reuse

    def price(tick: int) -> str:
        text = price_cache.get(tick)
        if text is None:
            text = price_cache[tick] = _price_text(tick)
        return text

    def insert(s: int, oid: str, tick: int, qty: int) -> None:
        orders[s][oid] = [tick, qty]
        level = levels[s].get(tick)
        if level is None:
            levels[s][tick] = {oid: None}
            if tick not in in_heap[s]:
                in_heap[s].add(tick)
                heapq.heappush(heaps[s], -tick if s == 0 else tick)
        else:
            level[oid] = None
        live_pos[s][oid] = len(live_ids[s])
        live_ids[s].append(oid)

    def remove(s: int, oid: str) -> int:
        tick = orders[s].pop(oid)[0]
        level = levels[s][tick]
        del level[oid]
        if not level:
            del levels[s][tick]
        ids, pos = live_ids[s], live_pos[s]
        i = pos.pop(oid)
        last = ids.pop()
        if last != oid:
            ids[i] = last
            pos[last] = i
        return tick

    def best(s: int) -> int:
        heap, lv, ih = heaps[s], levels[s], in_heap[s]
        while True:
            tick = -heap[0] if s == 0 else heap[0]
            if tick in lv:
                return tick
            heapq.heappop(heap)
            ih.discard(tick)

    next_id = ORDER_ID_BASE

    def fresh_id() -> str:
        nonlocal next_id
        next_id += 1 + int(rand() * 40)
        return str(next_id)

    mid = MID_TICK

    def new_tick(s: int) -> int:
        # Mostly within a few ticks of the mid; a share far out (most of them when deep).
        far = rand() < prm.p_far
        d = 1 + int(rand() * prm.far_ticks) if far else 1 + int(rand() * rand() * 12)
        tick = mid - d if s == 0 else mid + d
        return tick if tick > 0 else 1

    def new_qty() -> int:
        if rand() < 0.02:
            return 1 + int(rand() * 2000)
        return qty_table[int(rand() * n_qty)]

    us = START_US
    cur_sec = -1
    prefix = ""
    blocked = -1  # side kept empty during a one-sided episode
    episode_left = 0
    pending: tuple[int, str] | None = None  # (side, id) to re-add right after its delete

    for i in range(events):
        seq = SEQ_BASE + i

        # Time: strictly non-decreasing, often repeated, rarely a quiet gap of seconds.
        r = rand()
        if r < 0.9:
            us += int(rand() * rand() * 600)
        elif r > 0.9999:
            us += int(rand() * 5_000_000)
        sec = us // 1_000_000
        if sec != cur_sec:
            cur_sec = sec
            prefix = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%d %H:%M:%S")
        frac = us - sec * 1_000_000
        if rand() < 0.85:
            # Trailing zeros stripped, as in the reference file; no fraction at all if zero.
            digits = f"{frac:06d}".rstrip("0")
            t = f"{prefix}.{digits} UTC" if digits else f"{prefix} UTC"
        else:
            t = f"{prefix}.{frac:06d} UTC"

        # Mid price: a slow random walk pulled back towards 229.
        if rand() < 0.02:
            mid += 1 if rand() < 0.5 - (mid - MID_TICK) / 4000 else -1

        if episode_left:
            episode_left -= 1
            if not episode_left:
                blocked = -1
        elif rand() < prm.p_episode:
            blocked = 0 if rand() < 0.5 else 1
            lo, hi = prm.episode_len
            episode_left = lo + int(rand() * (hi - lo))

        n0, n1 = len(live_ids[0]), len(live_ids[1])
        live = n0 + n1

        if pending is not None:
            # Second half of a modify: the deleted id comes back at a new price.
            s, oid = pending
            pending = None
            if s != blocked and oid not in orders[s]:
                tick = new_tick(s)
                qty = new_qty()
                insert(s, oid, tick, qty)
                yield f"{seq},{oid},{SIDES[s]},{price(tick)},{qty},,,,,,,,,,,{t}\n"
                continue

        r = rand()
        if r < _P_ANOMALY:
            kind = int(rand() * 4)
            s = 0 if rand() < 0.5 else 1
            if s == blocked:
                s = 1 - s
            if kind == 0:  # DELETE of an unknown order: no change
                yield f"{seq},,,,,,,,,{fresh_id()},{SIDES[s]},,,,,{t}\n"
                continue
            if kind == 1:  # TRADE of an unknown order: no change
                yield f"{seq},,,,,,,,,,,{fresh_id()},{SIDES[s]},{price(mid)},{new_qty()},{t}\n"
                continue
            if kind == 2 or not live_ids[s]:  # UPDATE of an unknown order: inserted
                oid = fresh_id()
                tick = new_tick(s)
                qty = new_qty()
                insert(s, oid, tick, qty)
                yield f"{seq},,,,,{oid},{SIDES[s]},{price(tick)},{qty},,,,,,,{t}\n"
                continue
            # ADD of a live order: replaces it
            ids = live_ids[s]
            oid = ids[int(rand() * len(ids))]
            remove(s, oid)
            tick = new_tick(s)
            qty = new_qty()
            insert(s, oid, tick, qty)
            yield f"{seq},{oid},{SIDES[s]},{price(tick)},{qty},,,,,,,,,,,{t}\n"
            continue

        if live and r < _P_ANOMALY + _P_UPDATE:
            s = 0 if rand() * live < n0 else 1
            ids = live_ids[s]
            oid = ids[int(rand() * len(ids))]
            old_tick, old_qty = orders[s][oid]
            tick = old_tick + int(rand() * 9) - 4 if rand() < 0.8 else old_tick
            tick = tick if tick > 0 else 1
            qty = new_qty() if rand() < 0.5 else old_qty
            remove(s, oid)
            insert(s, oid, tick, qty)
            yield f"{seq},,,,,{oid},{SIDES[s]},{price(tick)},{qty},,,,,,,{t}\n"
            continue

        if live and r < _P_ANOMALY + _P_UPDATE + _P_TRADE:
            s = 0 if rand() < 0.5 else 1
            if not live_ids[s]:
                s = 1 - s
            tick = best(s)
            oid = next(iter(levels[s][tick]))  # first in time at the best level
            rest = orders[s][oid]
            q = rest[1]
            r = rand()
            if r < 0.55 and q > 1:
                tq = 1 + int(rand() * (q - 1))  # partial
                rest[1] = q - tq
            else:
                tq = q if r < 0.97 else q + 1 + int(rand() * q)  # full, or larger than resting
                remove(s, oid)
            yield f"{seq},,,,,,,,,,,{oid},{SIDES[s]},{price(tick)},{tq},{t}\n"
            continue

        # ADD or DELETE, steered towards the target number of live orders.
        p_add = 0.5 + 2.0 * (target - live) / target
        drain = blocked >= 0 and bool(live_ids[blocked]) and rand() < 0.5
        if not drain and (not live or rand() < p_add):
            s = 0 if rand() < 0.5 else 1
            if s == blocked:
                s = 1 - s
            r = rand()
            other = live_ids[1 - s]
            if r < 0.01 and other and other[-1] not in orders[s]:
                oid = other[-1]  # the same id live on both sides at once
            elif r < 0.3 and recent:
                oid = recent[int(rand() * len(recent))]
                if oid in orders[s]:
                    oid = fresh_id()
            else:
                oid = fresh_id()
            tick = new_tick(s)
            qty = new_qty()
            insert(s, oid, tick, qty)
            qty_text = f"{qty}.0" if rand() < 1e-4 else str(qty)
            yield f"{seq},{oid},{SIDES[s]},{price(tick)},{qty_text},,,,,,,,,,,{t}\n"
            continue

        s = blocked if drain else (0 if rand() * live < n0 else 1)
        ids = live_ids[s]
        oid = ids[int(rand() * len(ids))]
        remove(s, oid)
        recent.append(oid)
        if rand() < _P_MODIFY:
            pending = (s, oid)
        yield f"{seq},,,,,,,,,{oid},{SIDES[s]},,,,,{t}\n"


def _interleaved(events: int, seed: int, deep: bool, instruments: int) -> Iterator[str]:
    """``events`` rows of ``instruments`` independent books, interleaved at random, with the
    instrument's name first and one global seq_num."""
    rng = random.Random(f"l3tol1-bench-instruments:{seed}:{instruments}")
    names = [f"I{k:04d}" for k in range(instruments)]
    # Each instrument's own stream, long enough for any share of the events it may get.
    streams = [_rows(events, seed * 100_003 + k, deep) for k in range(instruments)]
    pick = rng.randrange
    for i in range(events):
        k = pick(instruments)
        row = next(streams[k])
        yield f"{names[k]},{SEQ_BASE + i}{row[row.index(',') :]}"


def _displace(rows: Iterator[str], window: int, seed: int) -> Iterator[str]:
    """Reorder rows so each lands at most ``window`` positions from its seq order.

    Row i gets the key i + U(0, window) and rows leave in key order. Once row i is in, every
    later row has a key >= i + 1, so keys below that are final: the heap never holds more than
    about ``window`` + 1 rows.
    """
    rng = random.Random(f"l3tol1-bench-displace:{seed}:{window}")
    rand = rng.random
    heap: list[tuple[float, int, str]] = []
    push, pop = heapq.heappush, heapq.heappop
    for i, row in enumerate(rows):
        push(heap, (i + rand() * window, i, row))
        limit = i + 1
        while heap and heap[0][0] < limit:
            yield pop(heap)[2]
    while heap:
        yield pop(heap)[2]


def generate(
    path: str | os.PathLike[str],
    events: int,
    seed: int = 1,
    window: int = 0,
    deep: bool = False,
    instruments: int = 0,
) -> None:
    """Write a synthetic L3 CSV of ``events`` rows to ``path`` (deterministic in the arguments).

    The event stream depends on (events, seed, deep, instruments) only: the file sorted by
    seq_num is the same for every ``window``. ``instruments`` > 0 adds an instrument column.
    """
    if instruments > 0:
        rows = _interleaved(events, seed, deep, instruments)
    else:
        rows = _rows(events, seed, deep)
    if window > 0:
        rows = _displace(rows, window, seed)
    with open(path, "w", encoding="ascii", newline="", buffering=1 << 20) as out:
        out.write("instrument," + HEADER if instruments > 0 else HEADER)
        chunk: list[str] = []
        for row in rows:
            chunk.append(row)
            if len(chunk) >= 8192:
                out.writelines(chunk)
                chunk.clear()
        out.writelines(chunk)


def parse_count(text: str) -> int:
    """Parse an event count such as ``600000``, ``600k``, ``1M`` or ``10_000_000``."""
    text = text.strip().replace("_", "")
    scale = {"k": 1_000, "K": 1_000, "m": 1_000_000, "M": 1_000_000}.get(text[-1:], 1)
    if scale != 1:
        text = text[:-1]
    return int(float(text) * scale)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=parse_count, required=True, help="rows, e.g. 1M")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--window", type=int, default=0, help="max out-of-order displacement")
    parser.add_argument("--deep", action="store_true", help="thousands of orders and levels")
    parser.add_argument("--instruments", type=int, default=0, help="interleave N instruments")
    parser.add_argument("-o", "--output", required=True, help="CSV file to write")
    args = parser.parse_args(argv)
    generate(
        args.output,
        args.events,
        seed=args.seed,
        window=args.window,
        deep=args.deep,
        instruments=args.instruments,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
