"""Naive reference for Databento MBO -> L1, used by the benchmark as the correctness oracle.

Deliberately simple and independent of the service: it decodes the file with Databento's own
``DBNDecoder`` (the service reads the records' bytes itself), keeps a dict of orders per
(publisher, instrument_id), and after every record that ends a venue event (``F_LAST``) scans
the whole book for the best bid and ask. Names, times and prices as SPEC section 12 says.

Usage: ``python bench/naive_mbo.py IN.dbn[.zst] OUT.csv``
"""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime

import databento_dbn as dbn

F_LAST = 0x80
UNDEF_PRICE = 2**63 - 1


def price_text(price: int) -> str:
    sign = "-" if price < 0 else ""
    whole, fraction = divmod(abs(price), 10**9)
    return sign + (f"{whole}.{fraction:09d}".rstrip("0") if fraction else str(whole))


def convert(path: str, output: str) -> None:
    """Convert a DBN MBO file to L1 CSV, the naive way."""
    with open(path, "rb") as f:
        data = f.read()
    zstd = data[:4] == b"\x28\xb5\x2f\xfd"
    decoder = dbn.DBNDecoder(compression=dbn.Compression.ZSTD if zstd else dbn.Compression.NONE)
    decoder.write(data)
    items = decoder.decode()
    metadata, records = items[0], items[1:]
    symbols: dict[tuple[int, date], str] = {}
    for raw_symbol, intervals in metadata.mappings.items():
        for interval in intervals:
            day = interval["start_date"]
            while day < interval["end_date"]:
                symbols[(int(interval["symbol"]), day)] = raw_symbol
                day = date.fromordinal(day.toordinal() + 1)
    books: dict[tuple[int, int], dict[tuple[int, str], list]] = {}
    last: dict[tuple[int, int], tuple] = {}
    first_publisher = None
    with open(output, "w", encoding="utf-8") as out:
        out.write("time,instrument,bid_price,ask_price,bid_size,ask_size,seq_num\n")
        for r in records:
            # An unknown action comes back as a plain str, a known one as an enum.
            action = str(getattr(r.action, "value", r.action))
            side = str(getattr(r.side, "value", r.side))
            if action not in "AMCRTFN" or (action in "AMC" and side not in "BA"):
                continue
            if action in "AM" and r.price == UNDEF_PRICE:
                continue
            key = (r.publisher_id, r.instrument_id)
            first_publisher = r.publisher_id if first_publisher is None else first_publisher
            book = books.setdefault(key, {})
            order = (r.order_id, side)
            if action in "AM":
                book.pop(order, None)
                if r.size > 0:
                    book[order] = [side, r.price, r.size]
            elif action == "C" and order in book:
                book[order][2] -= r.size
                if book[order][2] <= 0:
                    del book[order]
            elif action == "R":
                book.clear()
            if not r.flags & F_LAST:
                continue
            bids = [(p, s) for sd, p, s in book.values() if sd == "B"]
            asks = [(p, s) for sd, p, s in book.values() if sd == "A"]
            if not bids or not asks:
                continue
            bid, ask = max(p for p, _ in bids), min(p for p, _ in asks)
            top = (
                bid,
                ask,
                sum(s for p, s in bids if p == bid),
                sum(s for p, s in asks if p == ask),
            )
            if top == last.get(key):
                continue
            last[key] = top
            seconds, fraction = divmod(r.ts_recv, 10**9)
            moment = datetime.fromtimestamp(seconds, UTC)
            symbol = symbols.get((r.instrument_id, moment.date()), str(r.instrument_id))
            name = symbol if r.publisher_id == first_publisher else f"{symbol}@{r.publisher_id}"
            out.write(
                f"{moment.strftime('%Y-%m-%d %H:%M:%S')}.{fraction:09d} UTC,{name},"
                f"{price_text(bid)},{price_text(ask)},{top[2]},{top[3]},{r.sequence}\n"
            )


if __name__ == "__main__":
    convert(sys.argv[1], sys.argv[2])
