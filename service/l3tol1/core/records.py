"""The records that travel down the pipeline, with named fields (SPEC §1-4, §9, §12).

An `Event` is one valid L3 row (or Databento MBO record); a `Reject` one row that could not be
used; a `Quote` one L1 row. They are `NamedTuple`s: named for readers (``event.seq``), tuples for
the hot loops (unpacked in one step, built without keyword handling).

Prices are integers in units of 1e-9 (`PRICE_SCALE`): exact for every price the service accepts,
the same fixed point as Databento's, and cheap to compare and hash. `core.numbers` holds the
rules that bound every numeric field.
"""

# No `from __future__ import annotations` here: NamedTuple would turn each string annotation
# into a ForwardRef, compiling it, which was a fifth of the start-up's compile time.
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from l3tol1.core.plain import PlainReader

__all__ = [
    "Action",
    "Anomaly",
    "Event",
    "Quote",
    "Reason",
    "Reject",
    "Side",
    "events_from_plain",
    "events_to_plain",
]


class Action(IntEnum):
    """What an event does to the book (SPEC §1; the MBO actions of §12 map onto these)."""

    ADD = 0  # insert the order (an ADD of a live order replaces it)
    UPDATE = 1  # the order now has this price and qty (an unknown order is inserted)
    DELETE = 2  # remove the order
    TRADE = 3  # subtract qty from the resting order; removed at zero or below
    CANCEL = 4  # MBO `C`: as TRADE, with its own anomaly names
    CLEAR = 5  # MBO `R`: the instrument's book becomes empty
    NONE = 6  # MBO `N`: no change to the book (it may still end a venue event)
    PRINT = 7  # MBO `T`: a trade, reported; no change to the book (its fills' cancels do it)
    FILL = 8  # MBO `F`: a fill of a resting order, reported; no change to the book


class Side(IntEnum):
    """The side of an order: index 0 and 1 of every per-side pair in the book."""

    BUY = 0
    SELL = 1
    NONE = 2  # MBO `N`: only on an event that changes no order (a trade print, a clear...)


class Reason(StrEnum):
    """Why a row was rejected (SPEC §4, §9, §12), as written to the reject file."""

    FIELD_COUNT = "wrong field count"
    SEQ = "bad seq_num"
    NO_ACTION = "no action"
    MANY_ACTIONS = "more than one action"
    SIDE = "bad side"
    PRICE = "bad price"
    QTY = "bad qty"
    ZERO_QTY_ADD = "zero qty add"
    TIME = "bad time"
    INSTRUMENT = "bad instrument"
    ACTION = "bad action"
    RECORD = "bad record"
    UTF8 = "invalid utf-8"
    TOO_LONG = "line too long"
    LATE = "late"
    DUPLICATE = "duplicate"


class Anomaly(StrEnum):
    """Well-formed events that do not fit the book (SPEC §3): applied, counted, logged."""

    ADD_LIVE = "add_of_live_order"
    UPDATE_UNKNOWN = "update_of_unknown_order"
    DELETE_UNKNOWN = "delete_of_unknown_order"
    TRADE_UNKNOWN = "trade_of_unknown_order"
    TRADE_EXCEEDS = "trade_exceeds_resting_qty"
    CANCEL_UNKNOWN = "cancel_of_unknown_order"
    CANCEL_EXCEEDS = "cancel_exceeds_resting_qty"


class Event(NamedTuple):
    """One valid L3 row: what to do to which order, and where it came from."""

    seq: int  # the feed's sequence number (SPEC §5)
    action: int  # an `Action`
    instrument: str  # "" when the feed has no instrument column
    order_id: str  # opaque: never parsed as a number
    side: int  # a `Side`
    price: int  # in 1e-9 units; 0 when the action has none
    qty: int  # 0 when the action has none
    time: str | int  # CSV: the row's text, validated; MBO: ts_recv in ns since the epoch
    line: int  # 1-based physical line (or record index) in its input
    raw: str  # the line itself, for a late or duplicate reject
    last: bool  # ends a venue event: the write rule runs after it (always, for CSV rows)
    ts_event: int = 0  # MBO: the record's ts_event (ns); CSV: 0, the row's time is both


class Reject(NamedTuple):
    """A row that could not be applied (SPEC §4): one JSON line in the reject file."""

    line: int
    reason: str  # a `Reason`
    raw: str


class Quote(NamedTuple):
    """One L1 row (SPEC §2): the two-sided BBO of an instrument after the event ``seq``."""

    time: str | int  # as in `Event.time`
    instrument: str
    bid: int  # price in 1e-9 units
    ask: int
    bid_size: int
    ask_size: int
    seq: int


def events_to_plain(events: "list[Event]") -> "dict[str, list[object]]":
    """Events as plain data, column by column (a checkpoint's waiting events)."""
    from l3tol1.core.plain import columns

    return columns(events, Event._fields)


def events_from_plain(obj: object, key: str, where: str, read: "PlainReader") -> "list[Event]":
    """The events `events_to_plain` stored under ``key``, each field checked.

    :raises PlainDataError: a column is missing, of another length, or holds a bad value.
    """
    from l3tol1.core.numbers import MAX_QTY, MAX_SEQ, MAX_TIME_NS
    from l3tol1.core.plain import int64, natural

    actions = frozenset(int(a) for a in Action)
    sides = frozenset(int(s) for s in Side)
    has_ts_event = (
        isinstance(obj, dict) and isinstance(obj.get(key), dict) and "ts_event" in obj[key]
    )
    checks = (
        ("seq", lambda v: natural(v) and v <= MAX_SEQ),
        ("action", lambda v: type(v) is int and v in actions),
        ("instrument", lambda v: isinstance(v, str)),
        ("order_id", lambda v: isinstance(v, str)),
        ("side", lambda v: type(v) is int and v in sides),
        ("price", int64),
        ("qty", lambda v: natural(v) and v <= MAX_QTY),
        ("time", lambda v: isinstance(v, str) or (natural(v) and v <= MAX_TIME_NS)),
        ("line", natural),
        ("raw", lambda v: isinstance(v, str)),
        ("last", lambda v: isinstance(v, bool)),
        ("ts_event", lambda v: natural(v) and v <= MAX_TIME_NS),
    )
    # A checkpoint of an earlier version has no ts_event: its waiting events are L3 CSV rows,
    # whose ts_event is 0.
    rows = read.columns(obj, key, where, checks if has_ts_event else checks[:-1])
    return [Event(*row) for row in rows]
