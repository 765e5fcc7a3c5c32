"""Generated out-of-order streams through the real CLI equal the sort-then-apply model."""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import add, cli, delete, trade, update, write_l3
from tests.model import ADD, BUY, DELETE, SELL, TRADE, UPDATE, ev, model_rows

BASE_SEQ = 1627942268920653171
_WRITE = {ADD: add, UPDATE: update, TRADE: trade}


def generate(n: int, seed: int) -> list[tuple]:
    """Events (seq order) with a realistic mix, anomalies, one-sided and crossed moments."""
    rng = random.Random(seed)
    live: dict[tuple[str, int], tuple[str, int]] = {}
    events = []
    for i in range(n):
        seq = BASE_SEQ + i
        time = f"2021-08-03 01:{i // 60000 % 60:02d}:{i // 1000 % 60:02d}.{rng.randrange(10**6)}"
        time = time.rstrip("0") + " UTC" if rng.random() < 0.5 else time + " UTC"
        roll = rng.random()
        side = rng.choice((BUY, SELL))
        centre = 229 if side == BUY else 230
        price = _dec(Decimal(centre * 100 + rng.randint(-25, 25)) / 100)
        if roll < 0.42 or not live:
            oid = str(rng.randrange(10**9)) if rng.random() < 0.98 else rng.choice(["1", "2"])
            qty = rng.randint(1, 500)
            events.append((seq, ADD, oid, side, price, qty, time))
            live[(oid, side)] = (price, qty)
        elif roll < 0.85 or rng.random() < 0.05:
            oid, side = rng.choice(list(live)) if rng.random() > 0.01 else ("ghost", side)
            events.append((seq, DELETE, oid, side, "", 0, time))
            live.pop((oid, side), None)
        elif roll < 0.93:
            oid, side = rng.choice(list(live))
            events.append((seq, UPDATE, oid, side, price, rng.randint(0, 600), time))
            live[(oid, side)] = (price, 1)
        else:
            oid, side = rng.choice(list(live))
            events.append((seq, TRADE, oid, side, live[(oid, side)][0], rng.randint(1, 400), time))
    return events


def to_row(event: tuple) -> str:
    seq, action, oid, side, price, qty, time = event
    side_text = "BUY" if side == BUY else "SELL"
    if action == DELETE:
        return delete(seq, oid, side_text, time)
    return _WRITE[action](seq, oid, side_text, price, str(qty), time)


def displaced(items: list, window: int, rng: random.Random) -> list:
    return [items[i] for i in sorted(range(len(items)), key=lambda i: i + rng.uniform(0, window))]


def expected_csv(events: list[tuple]) -> str:
    full = [
        ev(s, a, o, sd, int(Decimal(p or 0) * 10**9), q, time=t) for s, a, o, sd, p, q, t in events
    ]
    times = {e[0]: e[6] for e in events}
    lines = ["time,bid_price,ask_price,bid_size,ask_size,seq_num"]
    for seq, _, (bid, ask, bid_size, ask_size) in model_rows(full):
        day, clock, _ = times[seq].split(" ")
        whole, _, fraction = clock.partition(".")
        lines.append(
            f"{day} {whole}.{fraction:0<6} UTC,{_dec(bid)},{_dec(ask)},{bid_size},{ask_size},{seq}"
        )
    return "\n".join(lines) + "\n"


def _dec(price: int | Decimal) -> str:
    if isinstance(price, int):
        price = Decimal(price) / 10**9
    return format(price.normalize(), "f")


@pytest.mark.parametrize("window", [0, 50, 1000])
def test_out_of_order_stream_matches_model(tmp_path: Path, window: int) -> None:
    """40k events displaced by up to `window` places: same bytes as sorting then applying."""
    events = generate(40_000, seed=window)
    rows = [to_row(e) for e in displaced(events, window, random.Random(window + 1))]
    src = write_l3(tmp_path / "l3.csv", rows)
    out = tmp_path / "l1.csv"
    result = cli("-i", src, "-o", out, "--no-follow", "--max-pending", str(max(window, 1) * 2))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "l1.csv.rejects.jsonl").read_text() == ""
    got = out.read_text()
    assert got.count("\n") > 3_000
    assert got == expected_csv(events)
