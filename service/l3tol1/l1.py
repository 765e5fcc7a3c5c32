"""L1 rows: when one is written and how it is formatted (SPEC §2)."""

from __future__ import annotations

from decimal import Decimal

from l3tol1.events import Row

__all__ = ["HEADER", "L1Formatter", "format_price", "format_time"]

HEADER = "time,bid_price,ask_price,bid_size,ask_size,seq_num\n"


def format_price(price: float) -> str:
    """Shortest decimal form, no trailing zeros, no exponent: 229, 228.2, 229.13."""
    text = repr(price)
    if "e" in text or "E" in text:
        # repr switches to exponent form below 1e-4 and from 1e16; Decimal keeps the digits.
        text = format(Decimal(text), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def format_time(time: str) -> str:
    """The input time with exactly six fractional digits: `... 01:00:03.223330 UTC`."""
    if len(time) == 30:  # "YYYY-MM-DD HH:MM:SS.ffffff UTC" already
        return time
    fraction = time[20:-4]  # empty when the input had no fraction (or just a dot)
    return f"{time[:19]}.{fraction:0<6} UTC"


class L1Formatter:
    """Formats rows to CSV text, remembering each price's text (a day has few distinct prices)."""

    __slots__ = ("_prices",)

    def __init__(self) -> None:
        self._prices: dict[float, str] = {}

    def format(self, rows: list[Row]) -> str:
        """The CSV lines of ``rows``, each ending in LF."""
        prices = self._prices
        if len(prices) > 1 << 16:
            prices.clear()
        out = []
        add_line = out.append
        for time, seq, bid, ask, bid_size, ask_size in rows:
            bid_text = prices.get(bid)
            if bid_text is None:
                bid_text = prices[bid] = format_price(bid)
            ask_text = prices.get(ask)
            if ask_text is None:
                ask_text = prices[ask] = format_price(ask)
            if len(time) != 30:  # most times have six digits already: skip the call
                time = format_time(time)
            add_line(f"{time},{bid_text},{ask_text},{bid_size},{ask_size},{seq}\n")
        return "".join(out)
