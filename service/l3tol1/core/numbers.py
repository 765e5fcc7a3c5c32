"""Every numeric field's rule: what is accepted, how it is held, how it is written (SPEC §2, §4).

Numbers are held exactly or rejected, whatever their length (a row of 5,000 digits is rejected
as cheaply as any other, never handed to ``int()`` whole). The bounds are chosen so that every
accepted value has one exact representation all the way to the output:

- ``seq_num``: a plain non-negative integer up to 2^64 - 1 (Parquet's uint64).
- ``qty``: a non-negative integer up to 2^32 - 1 (as ITCH's and Databento's sizes), written
  ``300`` or ``300.0``. A level's total then fits in 64 bits with any number of resting orders
  that fits in memory (2^31 orders at the largest qty would be needed to pass it).
- ``price``: a positive plain decimal with at most 9 fraction digits (after trailing zeros)
  and at most 9,223,372,036.854775807, held as an integer count of 1e-9 (`PRICE_SCALE`).
  Two different accepted prices never compare equal and never become ``inf``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

__all__ = [
    "MAX_PRICE",
    "MAX_QTY",
    "MAX_SEQ",
    "MAX_TIME_NS",
    "PRICE_SCALE",
    "format_price",
    "format_time",
    "format_time_ns",
    "parse_price",
    "parse_qty",
    "parse_seq",
    "time_is_valid",
]

PRICE_SCALE = 10**9
_PRICE_DIGITS = 9
MAX_PRICE = 2**63 - 1
MAX_QTY = 2**32 - 1
MAX_SEQ = 2**64 - 1
MAX_TIME_NS = 2**63 - 1  # the last time held, in ns since the epoch: int64 in every output
NS_PER_DAY = 86_400 * 10**9

# Plain decimals only: "1.62794E+18", "nan", "inf", "1_000", "+3" and " 5" are spreadsheet or
# programming artefacts, not prices. [0-9] rather than \d: no other scripts' digits.
_PRICE_RE = re.compile(r"([0-9]*)(?:\.([0-9]*))?")
_QTY_RE = re.compile(r"([0-9]+)(?:\.0*)?")
_TIME_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]{0,6})? UTC"
)


def parse_seq(text: str) -> int | None:
    """A plain non-negative integer up to `MAX_SEQ`, else None."""
    if not (text.isdigit() and text.isascii()):
        return None
    digits = text.lstrip("0")
    if len(digits) > 20:
        return None
    value = int(text) if len(text) <= 20 else int(digits or "0")
    return value if value <= MAX_SEQ else None


def parse_qty(text: str) -> int | None:
    """A non-negative integer up to `MAX_QTY`, written plainly or with a zero fraction."""
    if not text.isascii():
        return None
    match = _QTY_RE.fullmatch(text)
    if match is None:
        return None
    digits = match.group(1).lstrip("0")
    if len(digits) > 10:
        return None
    value = int(digits or "0")
    return value if value <= MAX_QTY else None


def parse_price(text: str) -> int | None:
    """A positive plain decimal within the bounds above, in 1e-9 units; else None."""
    if not text.isascii():
        return None
    match = _PRICE_RE.fullmatch(text)
    if match is None:
        return None
    whole, fraction = match.group(1), match.group(2)
    if not whole and not fraction:  # "", "."
        return None
    whole = whole.lstrip("0")
    fraction = (fraction or "").rstrip("0")
    if len(whole) > 10 or len(fraction) > _PRICE_DIGITS:
        return None
    value = int(whole or "0") * PRICE_SCALE + int(fraction.ljust(_PRICE_DIGITS, "0"))
    return value if 0 < value <= MAX_PRICE else None


def format_price(price: int) -> str:
    """Shortest decimal form, no trailing zeros, no exponent: 229, 228.2, 229.13 (and -1.5:
    Databento's spreads may trade below zero)."""
    if price < 0:
        return "-" + format_price(-price)
    whole, fraction = divmod(price, PRICE_SCALE)
    if not fraction:
        return str(whole)
    return f"{whole}.{fraction:09d}".rstrip("0")


def time_is_valid(text: str) -> bool:
    """``YYYY-MM-DD HH:MM:SS[.f] UTC`` with 0 to 6 fraction digits and a real calendar date."""
    match = _TIME_RE.fullmatch(text)
    if match is None:
        return False
    year, month, day, hour, minute, second = map(int, match.groups())
    try:
        datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return False
    return True


# The times an int64 of ns since the epoch can hold (the output schemas' ts_recv, SPEC §14).
_NS_FIRST = datetime(1677, 9, 21, 0, 12, 43, 145225, tzinfo=UTC)  # first whole microsecond
_NS_LAST = datetime(2262, 4, 11, 23, 47, 16, 854775, tzinfo=UTC)


def time_fits_ns(text: str) -> bool:
    """Whether a valid input time (`time_is_valid`) is an int64 of ns since the epoch: years
    about 1678 to 2262. Only the output schemas need that (their times are ns)."""
    year = int(text[:4])
    if 1678 <= year <= 2261:
        return True
    fraction = text[20:-4]
    stamp = datetime.fromisoformat(text[:19]).replace(
        tzinfo=UTC, microsecond=int(fraction.ljust(6, "0")) if fraction else 0
    )
    return _NS_FIRST <= stamp <= _NS_LAST


def format_time(time: str) -> str:
    """A valid input time with exactly six fraction digits: ``... 01:00:03.223330 UTC``."""
    if len(time) == 30:  # "YYYY-MM-DD HH:MM:SS.ffffff UTC" already
        return time
    fraction = time[20:-4]  # empty when the input had no fraction (or just a dot)
    return f"{time[:19]}.{fraction:0<6} UTC"


def format_time_ns(ns: int) -> str:
    """Nanoseconds since the epoch as ``2023-12-25 22:00:00.181198464 UTC`` (SPEC §12)."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{stamp}.{fraction:09d} UTC"
