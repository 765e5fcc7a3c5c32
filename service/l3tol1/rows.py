"""Parse and validate L3 rows: SPEC §1 (columns, actions) and §4 (bad rows).

`RowParser` is pure: text in, events and rejects out. It is the only place that decides whether a
row is valid; the source only splits bytes into lines and hands them here. `RowParser.parse_row`
holds the rules; `RowParser.parse` runs a batch through a fast path that handles the common rows
with a few cheap checks and hands every other row to `parse_row` (see its docstring).

Prices become floats. That is exact for what we accept: a decimal with at most 15 significant
digits survives the round trip through a double unchanged, and `repr` gives back its shortest
form (see l1.format_price). Prices with more digits are rejected rather than silently rounded.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TypeVar

from l3tol1.errors import InputError
from l3tol1.events import ADD, BUY, DELETE, SELL, TRADE, UPDATE, Event, Reject

__all__ = ["REQUIRED_COLUMNS", "Reason", "RowParser"]

REQUIRED_COLUMNS = (
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


class Reason:
    """The reject reasons written to the reject file (SPEC §4), one constant each."""

    FIELD_COUNT = "wrong field count"
    SEQ = "bad seq_num"
    NO_ACTION = "no action"
    MANY_ACTIONS = "more than one action"
    SIDE = "bad side"
    PRICE = "bad price"
    QTY = "bad qty"
    ZERO_QTY_ADD = "zero qty add"
    TIME = "bad time"
    UTF8 = "invalid utf-8"
    TOO_LONG = "line too long"
    LATE = "late"
    DUPLICATE = "duplicate"


_ACTION_PREFIX = {ADD: "add_", UPDATE: "update_", DELETE: "delete_", TRADE: "trade_"}
_SIDES = {"BUY": BUY, "SELL": SELL}
# Plain decimals only: "1.62794E+18", "nan", "inf", "1_000" and " 5" are spreadsheet or
# programming artefacts, not prices.
_PRICE_RE = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)", re.ASCII)
_QTY_FLOAT_RE = re.compile(r"(\d+)\.0*", re.ASCII)
_TIME_RE = re.compile(r"(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.\d{0,6})? UTC", re.ASCII)
_MAX_SIGNIFICANT_DIGITS = 15
# Bounds on the memo tables, so hostile input cannot grow them without limit.
_MEMO_LIMIT = 1 << 16
T = TypeVar("T")


class RowParser:
    """Turns the text lines of one input file into events and rejects.

    Built from the header line; columns are found by name, in any order, extra columns ignored.

    :raises InputError: if a required column is missing from the header.
    """

    def __init__(self, header: str, *, source: str = "input") -> None:
        header = header.removeprefix("\ufeff").rstrip("\r")
        names = [name.strip() for name in _split(header)]
        missing = [col for col in REQUIRED_COLUMNS if col not in names]
        if missing:
            raise InputError(
                f"{source}: header lacks required column(s) {', '.join(missing)}"
                f" (found: {', '.join(names) or 'nothing'})"
            )
        self.field_count = len(names)
        index = {col: names.index(col) for col in REQUIRED_COLUMNS}
        self._seq_i = index["seq_num"]
        self._time_i = index["time"]
        # Per action: (action, order_id, side, price, qty) column indexes, looked up once here.
        self._actions = tuple(
            (
                action,
                index[p + "order_id"],
                index[p + "side"],
                index.get(p + "price", -1),
                index.get(p + "qty", -1),
            )
            for action, p in _ACTION_PREFIX.items()
        )
        # Memo tables: each verdict of _price, _qty and _time_ok (per second), bounded.
        self._prices: dict[str, float | None] = {}
        self._qtys: dict[str, int | None] = {}
        self._good_seconds: set[str] = set()

    def parse(self, lines: Iterable[str], first_line: int) -> tuple[list[Event], list[Reject]]:
        """Parse consecutive lines (without their newline) numbered from ``first_line``.

        Nearly every row takes the fast path below: a plain ASCII line (no quote, no CR) with
        the right field count, exactly one action, and a price, qty and second of time that
        `parse_row` has already validated (the memo tables hold the few hundred that repeat all
        day). Any other row, every reject included, goes to `parse_row`, which is the reference
        and fills the memo tables. So the fast path only ever accepts rows that `parse_row`
        accepts, builds the same event, and never decides a reject.
        """
        events: list[Event] = []
        rejects: list[Reject] = []
        if not isinstance(lines, list):
            lines = list(lines)
        # One look at the whole batch instead of three per row: is every line plain ASCII
        # (isascii() is O(1)), without a quote or a CR?
        whole = "\n".join(lines)
        if "\r" in whole and _ends_every_line_once(whole, "\r", len(lines)):
            # CRLF input: parse_row would take the CR off each line; do it here for all of
            # them, so that the rows can take the fast path.
            lines = [line[:-1] for line in lines]
            whole = whole.replace("\r", "")
        plain = whole.isascii() and '"' not in whole and "\r" not in whole
        del whole
        # The loop runs once per row: every name it uses is a local, since attribute and global
        # lookups would cost about as much as the checks themselves.
        add_event = events.append
        parse_row = self.parse_row
        field_count = self.field_count
        seq_i = self._seq_i
        time_i = self._time_i
        add, update, delete, trade = self._actions
        add_id, update_id, delete_id, trade_id = add[1], update[1], delete[1], trade[1]
        sides = _SIDES
        prices = self._prices
        qtys = self._qtys
        good_seconds = self._good_seconds
        for line, text in enumerate(lines, first_line):
            fields = text.split(",")
            if len(fields) == field_count and (
                # ASCII also makes isdigit() below mean [0-9].
                plain or (text.isascii() and '"' not in text and "\r" not in text)
            ):
                # Exactly one *_order_id set picks the columns; a clash is parse_row's to reject.
                if fields[add_id]:
                    clash = fields[update_id] or fields[delete_id] or fields[trade_id]
                    columns = None if clash else add
                elif fields[delete_id]:
                    columns = None if fields[update_id] or fields[trade_id] else delete
                elif fields[update_id]:
                    columns = None if fields[trade_id] else update
                else:
                    columns = trade if fields[trade_id] else None
                if columns is not None:
                    action, id_i, side_i, price_i, qty_i = columns
                    if action == DELETE:
                        price: float | None = 0.0
                        qty: int | None = 0
                    else:
                        # A miss (not seen yet, or invalid: memoised as None) goes to parse_row.
                        price = prices.get(fields[price_i])
                        qty = qtys.get(fields[qty_i])
                    side = sides.get(fields[side_i])
                    seq = fields[seq_i]
                    time = fields[time_i]
                    n = len(time)
                    if (
                        side is not None
                        and price is not None
                        and qty is not None
                        and (qty or action != ADD)
                        and seq.isdigit()
                        # _TIME_RE without the regex: a second that _time_ok has already
                        # checked, then " UTC" or "." with 0 to 6 digits and " UTC".
                        and time[:19] in good_seconds
                        and time[-4:] == " UTC"
                        and (
                            n == 23
                            or (
                                24 <= n <= 30
                                and time[19] == "."
                                and (n == 24 or time[20:-4].isdigit())
                            )
                        )
                    ):
                        add_event(
                            (int(seq), action, fields[id_i], side, price, qty, time, line, text)
                        )
                        continue
            result = parse_row(text, line)
            if len(result) == 3:
                rejects.append(result)  # type: ignore[arg-type]
            else:
                add_event(result)  # type: ignore[arg-type]
        return events, rejects

    def parse_row(self, text: str, line: int) -> Event | Reject:
        """Return the event of one row, or its reject ``(line, reason, raw)``."""
        if text.endswith("\r"):
            text = text[:-1]
        fields = _split(text)
        if len(fields) != self.field_count:
            return (line, Reason.FIELD_COUNT, text)
        seq_text = fields[self._seq_i]
        if not (seq_text.isdigit() and seq_text.isascii()):
            return (line, Reason.SEQ, text)

        # Exactly one *_order_id must be set; it picks the action (SPEC §1).
        chosen = None
        for columns in self._actions:
            if fields[columns[1]]:
                if chosen is not None:
                    return (line, Reason.MANY_ACTIONS, text)
                chosen = columns
        if chosen is None:
            return (line, Reason.NO_ACTION, text)
        action, id_i, side_i, price_i, qty_i = chosen

        side = _SIDES.get(fields[side_i])
        if side is None:
            return (line, Reason.SIDE, text)

        if action == DELETE:
            price, qty = 0.0, 0
        else:
            price = _remembered(self._prices, fields[price_i], _parse_price)
            if price is None:
                return (line, Reason.PRICE, text)
            qty = _remembered(self._qtys, fields[qty_i], _parse_qty)
            if qty is None:
                return (line, Reason.QTY, text)
            if qty == 0 and action == ADD:
                return (line, Reason.ZERO_QTY_ADD, text)

        time = fields[self._time_i]
        if not self._time_ok(time):
            return (line, Reason.TIME, text)
        return (int(seq_text), action, fields[id_i], side, price, qty, time, line, text)

    def _time_ok(self, text: str) -> bool:
        match = _TIME_RE.fullmatch(text)
        if match is None:
            return False
        # The regex checks the shape; the calendar check is done once per distinct second.
        second = text[:19]
        if second in self._good_seconds:
            return True
        try:
            datetime(*map(int, match.groups()))
        except ValueError:
            return False
        if len(self._good_seconds) >= _MEMO_LIMIT:
            self._good_seconds.clear()
        self._good_seconds.add(second)
        return True


def _remembered(table: dict[str, T], text: str, parse: Callable[[str], T]) -> T:
    """``parse(text)``, remembered: the same few hundred price and qty strings repeat all day.
    The table is emptied when full, so hostile input cannot grow it without limit."""
    try:
        return table[text]
    except KeyError:
        pass
    value = parse(text)
    if len(table) >= _MEMO_LIMIT:
        table.clear()
    table[text] = value
    return value


def _ends_every_line_once(whole: str, char: str, lines: int) -> bool:
    """Whether each of the ``lines`` lines joined in ``whole`` ends in ``char``, its only one."""
    return (
        whole.endswith(char)
        and whole.count(char) == lines
        and whole.count(char + "\n") == lines - 1
    )


def _split(text: str) -> list[str]:
    # The feed never quotes; fall back to the csv module only when a quote appears.
    if '"' in text:
        try:
            return next(csv.reader([text]), [])
        except csv.Error:
            # A CR outside quotes, for one: no field count fits, the row is rejected for it.
            return []
    return text.split(",")


def _parse_price(text: str) -> float | None:
    """A finite positive plain decimal with at most 15 significant digits, else None."""
    if not _PRICE_RE.fullmatch(text):
        return None
    digits = text.replace(".", "").lstrip("0")
    if "." in text:
        digits = digits.rstrip("0")
    if len(digits) > _MAX_SIGNIFICANT_DIGITS:
        return None
    price = float(text)
    return price if price > 0.0 else None


def _parse_qty(text: str) -> int | None:
    """A non-negative integer, written plainly (``300``) or with a zero fraction (``300.0``)."""
    if text.isdigit() and text.isascii():
        return int(text)
    match = _QTY_FLOAT_RE.fullmatch(text)
    if match is not None:
        return int(match.group(1))
    return None
