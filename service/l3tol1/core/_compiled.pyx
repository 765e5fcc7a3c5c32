# cython: language_level=3, cdivision=True
"""The compiled core: the Python core's classes, over whole batches in C (issue 11).

The pure-Python modules beside this one are the reference and the fallback; the compiled core
keeps their interfaces and their results, byte for byte (tests run both, and compare them on
random streams). What changes is the data: a batch of events is an `EventBatch`, a C array of
fixed-size records whose strings (order ids, times, the raw line) point into the input's bytes,
never a Python object per event; quotes are a `QuoteBatch` alike. Python objects appear only
where a rare path needs them: a row the fast path does not take (quoted, non-ASCII, invalid: the
Python parser decides it, its event is copied in), a reject, an anomaly, a checkpoint.

The code is in core/cy/, one module per concept, sharing the declarations of its .pxd files:

    records   the table of instrument names; EventBatch, QuoteBatch, RowBatch; memory, hashing,
              U64Table (a small map of ids)
    parse     CsvParser: lines and fields scanned with memchr, the common row validated in C
    mbo       MboParser: Databento's fixed-size records read straight from their bytes
    feed      Feed: waiting events in an open-addressing table keyed by seq, a heap of seqs,
              their strings left in the input batches they came in (held while they wait)
    books     Instruments: every order in one hash table, every price level in another,
              a heap of level prices per book side with lazy deletion
    depths    Depths: the output schemas' books (an order table per instrument, each side's
              levels sorted with their sizes and order counts) and row rules, into a RowBatch
    format    L1Formatter, RowFormatter: rows from cached price texts into one growing buffer
    wire      pack_events, unpack_events, pack_quotes, unpack_quotes, instrument_days

This module is what Python imports (core/_compiled.pyi says what it offers; `compiled_core` in
core/__init__.py builds the `Core`). Importing it checks that the values the compiled core was
built with (core/cy/constants.pxd) are the Python core's (core/constants.py): ImportError if not.
"""

from libc.stdint cimport uint8_t, uint32_t

from l3tol1.core.cy cimport constants as c

from l3tol1.core.constants import check
from l3tol1.core.cy.books import Instruments
from l3tol1.core.cy.depths import Depths
from l3tol1.core.cy.feed import Feed
from l3tol1.core.cy.format import L1Formatter, RowFormatter
from l3tol1.core.cy.mbo import MboParser
from l3tol1.core.cy.parse import CsvParser
from l3tol1.core.cy.records import DayNames, EventBatch, InstrumentTable, QuoteBatch, RowBatch
from l3tol1.core.cy.wire import (
    instrument_days, pack_events, pack_quotes, unpack_events, unpack_quotes,
)

__all__ = [
    "IMPLEMENTATION", "CsvParser", "DayNames", "Depths", "EventBatch", "Feed", "InstrumentTable",
    "Instruments", "L1Formatter", "MboParser", "QuoteBatch", "RowBatch", "RowFormatter",
    "compiled_values", "instrument_days",
    "pack_events", "pack_quotes", "unpack_events", "unpack_quotes",
]

IMPLEMENTATION = "compiled"


def compiled_values():
    """The shared values as the compiled core was built with them, by core/constants.py's
    names."""
    cdef c.WireEv event
    cdef c.WireQt quote
    cdef uint32_t one = 1
    cdef char* e = <char*>&event
    cdef char* q = <char*>&quote
    return {
        "Action.ADD": c.ADD, "Action.UPDATE": c.UPDATE, "Action.DELETE": c.DELETE,
        "Action.TRADE": c.TRADE, "Action.CANCEL": c.CANCEL, "Action.CLEAR": c.CLEAR,
        "Action.NONE": c.NONE, "Action.PRINT": c.PRINT, "Action.FILL": c.FILL,
        "Side.BUY": c.BUY, "Side.SELL": c.SELL, "Side.NONE": c.SIDE_NONE,
        "Anomaly.ADD_LIVE": c.A_ADD_LIVE, "Anomaly.UPDATE_UNKNOWN": c.A_UPDATE_UNKNOWN,
        "Anomaly.DELETE_UNKNOWN": c.A_DELETE_UNKNOWN, "Anomaly.TRADE_UNKNOWN": c.A_TRADE_UNKNOWN,
        "Anomaly.TRADE_EXCEEDS": c.A_TRADE_EXCEEDS, "Anomaly.CANCEL_UNKNOWN": c.A_CANCEL_UNKNOWN,
        "Anomaly.CANCEL_EXCEEDS": c.A_CANCEL_EXCEEDS, "Anomaly.count": c.ANOMALY_KINDS,
        "numbers.PRICE_SCALE": c.PRICE_SCALE, "numbers.PRICE_DIGITS": c.PRICE_DIGITS,
        "numbers.MAX_PRICE": c.MAX_PRICE, "numbers.MAX_QTY": c.MAX_QTY,
        "numbers.MAX_SEQ": c.MAX_SEQ, "numbers.MAX_SEQ_TEXT": <bytes>c.MAX_SEQ_TEXT,
        "csv_parser.MAX_INSTRUMENT_BYTES": c.MAX_INSTRUMENT_BYTES,
        "book.COMPACT_SLACK": c.COMPACT_SLACK, "feed.GAP_MEMORY": c.GAP_MEMORY,
        "schemas.FLAG_CROSSED": c.FLAG_CROSSED, "schemas.FLAG_LOCKED": c.FLAG_LOCKED,
        "schemas.FLAG_GAP": c.FLAG_GAP, "schemas.FLAG_ANOMALY": c.FLAG_ANOMALY,
        "mbo.UNDEF_PRICE": c.UNDEF_PRICE, "mbo.MAX_TS": c.MAX_TS, "numbers.NS_PER_DAY": c.NS_PER_DAY,
        "mbo.HEADER_SIZE": c.HEADER_SIZE, "mbo.RTYPE_MBO": c.RTYPE_MBO,
        "mbo.RTYPE_SYMBOL_MAPPING": c.RTYPE_SYMBOL_MAPPING, "mbo.RTYPE_ERROR": c.RTYPE_ERROR,
        "mbo.F_LAST": c.F_LAST, "mbo.record_size": c.MBO_SIZE,
        "mbo.at.publisher_id": c.MBO_AT_PUBLISHER, "mbo.at.instrument_id": c.MBO_AT_INSTRUMENT,
        "mbo.at.ts_event": c.MBO_AT_TS_EVENT,
        "mbo.at.order_id": c.MBO_AT_ORDER_ID, "mbo.at.price": c.MBO_AT_PRICE,
        "mbo.at.size": c.MBO_AT_SIZE, "mbo.at.flags": c.MBO_AT_FLAGS,
        "mbo.at.action": c.MBO_AT_ACTION, "mbo.at.side": c.MBO_AT_SIDE,
        "mbo.at.ts_recv": c.MBO_AT_TS_RECV, "mbo.at.sequence": c.MBO_AT_SEQUENCE,
        "wire.PACKED_TIMES": c.PACKED_TIMES,
        "wire.EVENTS_MAGIC": <bytes>c.EVENTS_MAGIC, "wire.QUOTES_MAGIC": <bytes>c.QUOTES_MAGIC,
        "wire.event_size": sizeof(c.WireEv), "wire.quote_size": sizeof(c.WireQt),
        "wire.little_endian": (<uint8_t*>&one)[0] == 1,
        "wire.time_fields": _time_fields(),
        "wire.event.seq": <char*>&event.seq - e, "wire.event.price": <char*>&event.price - e,
        "wire.event.qty": <char*>&event.qty - e, "wire.event.line": <char*>&event.line - e,
        "wire.event.time": <char*>&event.time_ns - e,
        "wire.event.ts_event": <char*>&event.ts_event - e,
        "wire.event.action": <char*>&event.action - e, "wire.event.side": <char*>&event.side - e,
        "wire.event.last": <char*>&event.last - e,
        "wire.event.inst_size": <char*>&event.inst_size - e,
        "wire.event.oid_size": <char*>&event.oid_size - e,
        "wire.event.time_size": <char*>&event.time_size - e,
        "wire.quote.bid": <char*>&quote.bid - q, "wire.quote.ask": <char*>&quote.ask - q,
        "wire.quote.bid_size": <char*>&quote.bid_size - q,
        "wire.quote.ask_size": <char*>&quote.ask_size - q,
        "wire.quote.time": <char*>&quote.time_ns - q, "wire.quote.seq": <char*>&quote.seq - q,
        "wire.quote.inst_size": <char*>&quote.inst_size - q,
        "wire.quote.time_size": <char*>&quote.time_size - q,
    }


def _time_fields():
    """(shift, bits) of each field of a packed time, year first, as records.pxd packs them."""
    widths = (c.TIME_BITS_YEAR, c.TIME_BITS_MONTH, c.TIME_BITS_DAY, c.TIME_BITS_HOUR,
              c.TIME_BITS_MINUTE, c.TIME_BITS_SECOND, c.TIME_BITS_MICROS)
    return tuple((sum(widths[i + 1:]), width) for i, width in enumerate(widths))


check(compiled_values())
