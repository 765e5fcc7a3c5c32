"""Parse and validate L3 CSV rows: SPEC §1 (columns, actions), §4 (bad rows), §9 (instruments).

`CsvParser` is pure: bytes of complete lines in, events and rejects out. It is the only place
that decides whether a CSV row is valid. `CsvParser.parse_row` holds the rules; `CsvParser.parse`
runs a batch through a fast path that handles the common rows with a few cheap checks against
memoised verdicts and hands every other row to `parse_row` (see its docstring).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from typing import TypeVar

from l3tol1.core.numbers import parse_price, parse_qty, parse_seq, time_fits_ns, time_is_valid
from l3tol1.core.records import Action, Event, Reason, Reject, Side

__all__ = [
    "INSTRUMENT_COLUMNS",
    "MAX_INSTRUMENT_BYTES",
    "MAX_LINE",
    "REQUIRED_COLUMNS",
    "CsvParser",
    "HeaderError",
    "too_long_reject",
]

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
# Looked for in this order when --instrument-column is not given (SPEC §9).
INSTRUMENT_COLUMNS = ("instrument", "symbol")
MAX_INSTRUMENT_BYTES = 64
# A line longer than this many bytes (its newline not counted) is rejected as `line too long`.
MAX_LINE = 64 * 1024
# How much of an oversized line its reject record keeps.
_TOO_LONG_EXCERPT = 256

_ACTION_PREFIX = {
    Action.ADD: "add_",
    Action.UPDATE: "update_",
    Action.DELETE: "delete_",
    Action.TRADE: "trade_",
}
_SIDES = {"BUY": Side.BUY, "SELL": Side.SELL}
# Bounds on the memo tables, so that hostile input cannot grow them without limit.
_MEMO_LIMIT = 1 << 16
_new = tuple.__new__
T = TypeVar("T")


class HeaderError(ValueError):
    """The header line cannot be used: a required column is missing or named twice."""


def too_long_reject(line: int, raw: bytes, max_line: int = MAX_LINE) -> Reject:
    """The reject of a line over ``max_line`` bytes: its first bytes, never the whole line.

    The same text wherever the line was cut by reads, so the reject file stays the same."""
    excerpt = raw[:_TOO_LONG_EXCERPT].decode("utf-8", errors="backslashreplace")
    return Reject(line, Reason.TOO_LONG, f"{excerpt}... (more than {max_line} bytes)")


class CsvParser:
    """Turns the lines of one input file into events and rejects.

    Built from the header line: columns are found by name, in any order, extra columns ignored.

    :param instrument_column: the column naming the instrument; None looks for
        `INSTRUMENT_COLUMNS`, and a feed without one is a single instrument ("").
    :raises HeaderError: a required column (or the named instrument column) is missing, or a
        column it reads appears twice.
    """

    def __init__(
        self,
        header: str,
        *,
        instrument_column: str | None = None,
        max_line: int = MAX_LINE,
        ns_times: bool = False,
    ) -> None:
        header = header.removeprefix("\ufeff").rstrip("\r")
        names = [name.strip() for name in _split(header)]
        wanted = list(REQUIRED_COLUMNS)
        if instrument_column is not None:
            wanted.append(instrument_column)
        else:
            wanted += [c for c in INSTRUMENT_COLUMNS if c in names][:1]
        missing = [col for col in wanted if col not in names]
        if missing:
            raise HeaderError(
                f"header lacks required column(s) {', '.join(missing)}"
                f" (found: {', '.join(names) or 'nothing'})"
            )
        twice = [col for col in wanted if names.count(col) > 1]
        if twice:
            raise HeaderError(f"header names column(s) {', '.join(twice)} more than once")
        self.field_count = len(names)
        self.max_line = max_line
        self.ns_times = ns_times  # a time must also be an int64 of ns (the output schemas)
        self.instrument_column = wanted[-1] if len(wanted) > len(REQUIRED_COLUMNS) else None
        index = {col: names.index(col) for col in wanted}
        self._seq_i = index["seq_num"]
        self._time_i = index["time"]
        self._inst_i = -1 if self.instrument_column is None else index[self.instrument_column]
        # Per action: (action, order_id, side, price, qty) column indexes, looked up once here.
        self._actions = tuple(
            (
                int(action),
                index[p + "order_id"],
                index[p + "side"],
                index.get(p + "price", -1),
                index.get(p + "qty", -1),
            )
            for action, p in _ACTION_PREFIX.items()
        )
        # Memo tables: each verdict of parse_price, parse_qty and time_is_valid (per second).
        self._prices: dict[str, int | None] = {}
        self._qtys: dict[str, int | None] = {}
        self._good_seconds: set[str] = set()

    def parse(self, data: bytes, first_line: int) -> tuple[list[Event], list[Reject]]:
        """Parse whole lines, each ending in a newline, numbered from ``first_line``.

        Nearly every row takes the fast path below: a plain ASCII line (no quote, no CR) with
        the right field count, exactly one action, and a price, qty and second of time that
        `parse_row` has already validated (the memo tables hold the few hundred that repeat all
        day). Any other row, every reject included, goes to `parse_row`, which is the reference
        and fills the memo tables. So the fast path only ever accepts rows that `parse_row`
        accepts, builds the same event, and never decides a reject.
        """
        events: list[Event] = []
        rejects: list[Reject] = []
        try:
            whole = data.decode("utf-8")
        except UnicodeDecodeError:
            return self._parse_each(data, first_line)
        lines = whole.split("\n")
        lines.pop()  # after the last newline: nothing
        # A line of more than max_line // 4 characters may pass max_line bytes: measure in bytes.
        if len(whole) > self.max_line // 4 and max(map(len, lines)) > self.max_line // 4:
            return self._parse_each(data, first_line)
        if "\r" in whole and _ends_every_line_once(whole, "\r", len(lines)):
            # CRLF input: parse_row would take the CR off each line; do it here for all of
            # them, so that the rows can take the fast path.
            lines = [line[:-1] for line in lines]
            whole = whole.replace("\r", "")
        # One look at the whole batch instead of three per row: is every line plain ASCII
        # (isascii() is O(1)), without a quote or a CR?
        plain = whole.isascii() and '"' not in whole and "\r" not in whole
        del whole
        # The loop runs once per row: every name it uses is a local, since attribute and global
        # lookups would cost about as much as the checks themselves.
        add_event = events.append
        parse_row = self.parse_row
        field_count = self.field_count
        seq_i = self._seq_i
        time_i = self._time_i
        inst_i = self._inst_i
        add, update, delete, trade = self._actions
        add_id, update_id, delete_id, trade_id = add[1], update[1], delete[1], trade[1]
        delete_action = int(Action.DELETE)
        add_action = int(Action.ADD)
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
                    if action == delete_action:
                        price: int | None = 0
                        qty: int | None = 0
                    else:
                        # A miss (not seen yet, or invalid: memoised as None) goes to parse_row.
                        price = prices.get(fields[price_i])
                        qty = qtys.get(fields[qty_i])
                    side = sides.get(fields[side_i])
                    seq = fields[seq_i]
                    time = fields[time_i]
                    instrument = fields[inst_i] if inst_i >= 0 else ""
                    n = len(time)
                    if (
                        side is not None
                        and price is not None
                        and qty is not None
                        and (qty or action != add_action)
                        and seq.isdigit()
                        and len(seq) < 20  # below 10^19: fits 64 bits, no bound to check
                        and (inst_i < 0 or 0 < len(instrument) <= MAX_INSTRUMENT_BYTES)
                        # _TIME_RE without the regex: a second that time_is_valid has already
                        # accepted, then " UTC" or "." with 0 to 6 digits and " UTC".
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
                            _new(
                                Event,
                                (
                                    int(seq),
                                    action,
                                    instrument,
                                    fields[id_i],
                                    side,
                                    price,
                                    qty,
                                    time,
                                    line,
                                    text,
                                    True,
                                    0,
                                ),
                            )
                        )
                        continue
            result = parse_row(text, line)
            if type(result) is Reject:
                rejects.append(result)
            else:
                add_event(result)  # type: ignore[arg-type]
        return events, rejects

    def parse_row(self, text: str, line: int) -> Event | Reject:
        """The event of one row (without its newline), or its reject."""
        if text.endswith("\r"):
            text = text[:-1]
        fields = _split(text)
        if len(fields) != self.field_count:
            return Reject(line, Reason.FIELD_COUNT, text)
        seq = parse_seq(fields[self._seq_i])
        if seq is None:
            return Reject(line, Reason.SEQ, text)

        # Exactly one *_order_id must be set; it picks the action (SPEC §1).
        chosen = None
        for columns in self._actions:
            if fields[columns[1]]:
                if chosen is not None:
                    return Reject(line, Reason.MANY_ACTIONS, text)
                chosen = columns
        if chosen is None:
            return Reject(line, Reason.NO_ACTION, text)
        action, id_i, side_i, price_i, qty_i = chosen

        side = _SIDES.get(fields[side_i])
        if side is None:
            return Reject(line, Reason.SIDE, text)

        if action == Action.DELETE:
            price, qty = 0, 0
        else:
            found_price = _remembered(self._prices, fields[price_i], parse_price)
            if found_price is None:
                return Reject(line, Reason.PRICE, text)
            found_qty = _remembered(self._qtys, fields[qty_i], parse_qty)
            if found_qty is None:
                return Reject(line, Reason.QTY, text)
            if found_qty == 0 and action == Action.ADD:
                return Reject(line, Reason.ZERO_QTY_ADD, text)
            price, qty = found_price, found_qty

        time = fields[self._time_i]
        if not self._time_ok(time):
            return Reject(line, Reason.TIME, text)
        instrument = ""
        if self._inst_i >= 0:
            instrument = fields[self._inst_i]
            if not 0 < len(instrument.encode("utf-8")) <= MAX_INSTRUMENT_BYTES:
                return Reject(line, Reason.INSTRUMENT, text)
        return Event(
            seq, action, instrument, fields[id_i], side, price, qty, time, line, text, True
        )

    def _parse_each(self, data: bytes, first_line: int) -> tuple[list[Event], list[Reject]]:
        """The slow path for a batch holding invalid UTF-8 or a long line: line by line, in
        bytes, so that `line too long` means the same wherever reads cut the input."""
        events: list[Event] = []
        rejects: list[Reject] = []
        raws = data.split(b"\n")
        raws.pop()
        for line, raw in enumerate(raws, first_line):
            if len(raw) > self.max_line:
                rejects.append(too_long_reject(line, raw, self.max_line))
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("utf-8", errors="backslashreplace")
                rejects.append(Reject(line, Reason.UTF8, text))
                continue
            result = self.parse_row(text, line)
            if type(result) is Reject:
                rejects.append(result)
            else:
                events.append(result)  # type: ignore[arg-type]
        return events, rejects

    def _time_ok(self, text: str) -> bool:
        if not time_is_valid(text):
            return False
        if self.ns_times and not time_fits_ns(text):
            return False
        # Remember the second: the fast path accepts later times in it without the regex (not
        # a second where an int64 of ns begins or ends: only some of its times fit).
        if not self.ns_times or 1678 <= int(text[:4]) <= 2261:
            if len(self._good_seconds) >= _MEMO_LIMIT:
                self._good_seconds.clear()
            self._good_seconds.add(text[:19])
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
    """Whether each of the ``lines`` lines in ``whole`` (each with its newline) ends in
    ``char``, its only one."""
    return whole.count(char) == lines and whole.count(char + "\n") == lines


def _split(text: str) -> list[str]:
    # The feed never quotes; fall back to the csv module only when a quote appears.
    if '"' in text:
        try:
            return next(csv.reader([text]), [])
        except csv.Error:
            # A CR outside quotes, for one: no field count fits, the row is rejected for it.
            return []
    return text.split(",")
