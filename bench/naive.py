"""Naive reference L3 -> L1 converter, used by the benchmark as the correctness oracle.

It is deliberately simple and independent of the service: it reads every row into memory,
drops the rows SPEC section 4 rejects, keeps the first row of each seq_num, sorts by seq_num,
applies each event to a dict of orders (SPEC sections 1-3) and finds the best bid and ask after
every event by scanning all price levels. Prices are ``decimal.Decimal``.

Ordering assumption: every row is within ``--max-pending`` rows of its place, so the service
sees no ``late`` rows and sorting the whole file gives the same event order it applies.

Policy where SPEC is silent: an UPDATE to qty 0 leaves no resting order (like a TRADE that
reaches zero), so it removes the order.

Many instruments (SPEC section 9): with an ``instrument`` (or ``symbol``) column, each instrument
has its own dict of orders and its own last row, and the output gains the instrument column.

Usage: ``python bench/naive.py IN.csv OUT.csv``
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
from datetime import datetime
from decimal import Decimal

REQUIRED = (
    "seq_num",
    "add_order_id",
    "add_side",
    "add_price",
    "add_qty",
    "update_order_id",
    "update_side",
    "update_price",
    "update_qty",
    "delete_order_id",
    "delete_side",
    "trade_order_id",
    "trade_side",
    "trade_price",
    "trade_qty",
    "time",
)

_SEQ_RE = re.compile(r"[0-9]+\Z")
# Plain decimal only: an exponent form such as 1.62794E+18 is spreadsheet damage, not a price.
_PRICE_RE = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\Z")
_QTY_RE = re.compile(r"([0-9]+)(?:\.0*)?\Z")
_TIME_RE = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.([0-9]{0,6}))? UTC\Z"
)
_SIDES = ("BUY", "SELL")

ADD, UPDATE, DELETE, TRADE = "ADD", "UPDATE", "DELETE", "TRADE"

# One parsed event: (seq, kind, order_id, side, price or None, qty or None, output time text,
# instrument).
Event = tuple[int, str, str, str, Decimal | None, int | None, str, str]


class BadRow(ValueError):
    """A row SPEC section 4 rejects."""


def _qty(text: str) -> int:
    m = _QTY_RE.match(text)
    if m is None:
        raise BadRow(f"bad qty {text!r}")
    return int(m.group(1))


def _price(text: str) -> Decimal:
    if _PRICE_RE.match(text) is None:
        raise BadRow(f"bad price {text!r}")
    value = Decimal(text)
    if value <= 0:
        raise BadRow(f"price not positive {text!r}")
    return value


def _time(text: str) -> str:
    m = _TIME_RE.match(text)
    if m is None:
        raise BadRow(f"bad time {text!r}")
    try:
        datetime.fromisoformat(m.group(1))
    except ValueError as exc:
        raise BadRow(f"bad time {text!r}") from exc
    return f"{m.group(1)}.{(m.group(2) or '').ljust(6, '0')} UTC"


def parse_row(row: list[str], col: dict[str, int], width: int) -> Event:
    """Validate one data row (SPEC section 4) and return its event; raise BadRow if rejected."""
    if len(row) != width:
        raise BadRow(f"expected {width} fields, got {len(row)}")
    seq_text = row[col["seq_num"]]
    if _SEQ_RE.match(seq_text) is None:
        raise BadRow(f"bad seq_num {seq_text!r}")
    present = [k for k in ("add", "update", "delete", "trade") if row[col[f"{k}_order_id"]] != ""]
    if len(present) != 1:
        raise BadRow(f"{len(present)} actions in row")
    kind = present[0]
    oid = row[col[f"{kind}_order_id"]]
    side = row[col[f"{kind}_side"]]
    if side not in _SIDES:
        raise BadRow(f"bad side {side!r}")
    price: Decimal | None = None
    qty: int | None = None
    if kind in ("add", "update"):
        price = _price(row[col[f"{kind}_price"]])
        qty = _qty(row[col[f"{kind}_qty"]])
        if kind == "add" and qty == 0:
            raise BadRow("zero-qty ADD")
    elif kind == "trade":
        # The trade price is validated but not used: a trade always hits the resting order.
        _price(row[col["trade_price"]])
        qty = _qty(row[col["trade_qty"]])
    instrument = ""
    if "instrument" in col or "symbol" in col:
        instrument = row[col.get("instrument", col.get("symbol", -1))]
        if not 0 < len(instrument.encode()) <= 64:
            raise BadRow("bad instrument")
    time_text = _time(row[col["time"]])
    return (int(seq_text), kind.upper(), oid, side, price, qty, time_text, instrument)


def read_events(
    input_path: str | os.PathLike[str],
) -> tuple[list[Event], dict[str, int], bool]:
    """Read every row, drop rejected and duplicate rows, return the events sorted by seq and
    whether the file has an instrument column."""
    stats = {"rows": 0, "rejected": 0, "duplicate": 0}
    # utf-8-sig: SPEC accepts a byte-order mark before the header.
    with open(input_path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise SystemExit(f"{input_path}: empty file, no header")
        col = {name.strip(): i for i, name in enumerate(header)}
        missing = [name for name in REQUIRED if name not in col]
        if missing:
            raise SystemExit(f"{input_path}: missing required column(s): {', '.join(missing)}")
        by_seq: dict[int, Event] = {}
        for row in reader:
            stats["rows"] += 1
            try:
                event = parse_row(row, col, len(header))
            except BadRow:
                stats["rejected"] += 1
                continue
            if event[0] in by_seq:
                stats["duplicate"] += 1  # the first row of a seq wins, as in the service
                continue
            by_seq[event[0]] = event
    instruments = "instrument" in col or "symbol" in col
    return [by_seq[seq] for seq in sorted(by_seq)], stats, instruments


def _fmt_price(value: Decimal) -> str:
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def convert(input_path: str | os.PathLike[str], output_path: str | os.PathLike[str]) -> None:
    """Convert an L3 CSV file to an L1 CSV file, the naive way."""
    events, stats, with_instrument = read_events(input_path)
    # Per instrument: its orders, its price levels per side, and the last row written for it.
    books: dict[str, tuple[dict, dict]] = {}
    lasts: dict[str, tuple[Decimal, Decimal, int, int]] = {}
    anomalies = 0
    written = 0

    def remove(key: tuple[str, str]) -> None:
        price, qty = orders.pop(key)
        book = levels[key[1]]
        left = book[price] - qty
        if left:
            book[price] = left
        else:
            del book[price]

    def insert(key: tuple[str, str], price: Decimal, qty: int) -> None:
        if qty <= 0:
            return  # nothing rests at zero (see module docstring)
        orders[key] = (price, qty)
        book = levels[key[1]]
        book[price] = book.get(price, 0) + qty

    with open(output_path, "w", encoding="utf-8", newline="") as out:
        if with_instrument:
            out.write("time,instrument,bid_price,ask_price,bid_size,ask_size,seq_num\n")
        else:
            out.write("time,bid_price,ask_price,bid_size,ask_size,seq_num\n")
        for seq, kind, oid, side, price, qty, time_text, instrument in events:
            orders, levels = books.setdefault(instrument, ({}, {"BUY": {}, "SELL": {}}))
            key = (oid, side)
            live = key in orders
            if kind in (ADD, UPDATE):
                assert price is not None and qty is not None
                if live:
                    anomalies += kind == ADD  # ADD of a live order: replace it
                    remove(key)
                else:
                    anomalies += kind == UPDATE  # UPDATE of an unknown order: insert it
                insert(key, price, qty)
            elif kind == DELETE:
                if live:
                    remove(key)
                else:
                    anomalies += 1
            else:  # TRADE
                assert qty is not None
                if not live:
                    anomalies += 1
                else:
                    resting_price, resting_qty = orders[key]
                    anomalies += qty > resting_qty
                    remove(key)
                    insert(key, resting_price, resting_qty - qty)
            bids, asks = levels["BUY"], levels["SELL"]
            if not bids or not asks:
                continue
            # The naive part: scan every level of both sides after every event.
            bid = max(bids)
            ask = min(asks)
            top = (bid, ask, bids[bid], asks[ask])
            if top != lasts.get(instrument):
                lasts[instrument] = top
                written += 1
                name = f"{instrument}," if with_instrument else ""
                out.write(
                    f"{time_text},{name}{_fmt_price(bid)},{_fmt_price(ask)},{top[2]},{top[3]},"
                    f"{seq}\n"
                )
    print(
        f"naive: rows={stats['rows']} events={len(events)} rejected={stats['rejected']} "
        f"duplicate={stats['duplicate']} anomalies={anomalies} l1_rows={written}",
        file=sys.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", help="L3 CSV file")
    parser.add_argument("output", help="L1 CSV file to write")
    args = parser.parse_args(argv)
    convert(args.input, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
