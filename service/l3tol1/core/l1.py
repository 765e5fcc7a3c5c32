"""L1 quotes as CSV text (SPEC §2, §9, §12)."""

from __future__ import annotations

from l3tol1.core.numbers import format_price, format_time, format_time_ns
from l3tol1.core.records import Quote

__all__ = ["L1Formatter", "csv_header"]

_COLUMNS = ("time", "bid_price", "ask_price", "bid_size", "ask_size", "seq_num")
# Distinct prices a day holds are few; the cache is emptied past this many, so hostile input
# cannot grow it without limit.
_CACHE_LIMIT = 1 << 16


def csv_header(with_instrument: bool) -> str:
    """The L1 CSV header line: ``instrument`` follows ``time`` when the feed has instruments."""
    columns = list(_COLUMNS)
    if with_instrument:
        columns.insert(1, "instrument")
    return ",".join(columns) + "\n"


class L1Formatter:
    """Formats quotes to CSV lines, remembering each price's text.

    :param with_instrument: write the ``instrument`` column (SPEC §9).
    """

    __slots__ = ("_names", "_prices", "_times", "with_instrument")

    def __init__(self, *, with_instrument: bool = False) -> None:
        self.with_instrument = with_instrument
        self._prices: dict[int, str] = {}
        self._times: dict[int, str] = {}  # second -> text, for nanosecond times
        self._names: dict[str, str] = {}  # instrument -> its CSV field (quoted if it must be)

    def format(self, quotes: list[Quote]) -> str:
        """The CSV lines of ``quotes``, each ending in LF."""
        prices = self._prices
        if len(prices) > _CACHE_LIMIT:
            prices.clear()
        out: list[str] = []
        add_line = out.append
        with_instrument = self.with_instrument
        for time, instrument, bid, ask, bid_size, ask_size, seq in quotes:
            bid_text = prices.get(bid)
            if bid_text is None:
                bid_text = prices[bid] = format_price(bid)
            ask_text = prices.get(ask)
            if ask_text is None:
                ask_text = prices[ask] = format_price(ask)
            if isinstance(time, int):
                time = self._time_ns(time)
            elif len(time) != 30:  # most times have six digits already: skip the call
                time = format_time(time)
            if with_instrument:
                name = self._names.get(instrument)
                if name is None:
                    name = self._names[instrument] = _csv_field(instrument)
                add_line(f"{time},{name},{bid_text},{ask_text},{bid_size},{ask_size},{seq}\n")
            else:
                add_line(f"{time},{bid_text},{ask_text},{bid_size},{ask_size},{seq}\n")
        return "".join(out)

    def _time_ns(self, ns: int) -> str:
        seconds, fraction = divmod(ns, 1_000_000_000)
        stamp = self._times.get(seconds)
        if stamp is None:
            if len(self._times) > _CACHE_LIMIT:
                self._times.clear()
            stamp = self._times[seconds] = format_time_ns(seconds * 1_000_000_000)[:19]
        return f"{stamp}.{fraction:09d} UTC"


def _csv_field(text: str) -> str:
    """``text`` as one CSV field: quoted (RFC 4180) when it holds a comma, quote or line end."""
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text
