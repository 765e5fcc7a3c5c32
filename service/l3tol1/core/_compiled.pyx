# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""The compiled core: the Python core's classes, over whole batches in C (issue 11).

The pure-Python modules beside this one are the reference and the fallback; the compiled core
keeps their interfaces and their results, byte for byte (tests run both, and compare them on
random streams). What changes is the data: a batch of events is an `EventBatch`, a C array of
fixed-size records whose strings (order ids, times, the raw line) point into the input's bytes,
never a Python object per event; quotes are a `QuoteBatch` alike. Python objects appear only
where a rare path needs them: a row the fast path does not take (quoted, non-ASCII, invalid: the
Python parser decides it, its event is copied in), a reject, an anomaly, a checkpoint.

The code is in core/cy/, one module per concept, sharing the declarations of its .pxd files:

    records   the table of instrument names; EventBatch, QuoteBatch; memory, hashing
    parse     CsvParser: lines and fields scanned with memchr, the common row validated in C
    mbo       MboParser: Databento's fixed-size records read straight from their bytes
    feed      Feed: waiting events in an open-addressing table keyed by seq, a heap of seqs
    books     Instruments: every order in one hash table, every price level in another,
              a heap of level prices per book side with lazy deletion
    format    L1Formatter: rows from cached price texts into one growing buffer
    wire      pack_events, unpack_events, pack_quotes, unpack_quotes, instrument_days

This module is what Python imports (`compiled_core` in core/__init__.py builds the `Core`).
"""

from l3tol1.core.cy.books import Instruments
from l3tol1.core.cy.feed import Feed
from l3tol1.core.cy.format import L1Formatter
from l3tol1.core.cy.mbo import MboParser
from l3tol1.core.cy.parse import CsvParser
from l3tol1.core.cy.records import EventBatch, InstrumentTable, QuoteBatch
from l3tol1.core.cy.wire import (
    instrument_days, pack_events, pack_quotes, unpack_events, unpack_quotes,
)

__all__ = [
    "IMPLEMENTATION", "CsvParser", "EventBatch", "Feed", "InstrumentTable", "Instruments",
    "L1Formatter", "MboParser", "QuoteBatch", "instrument_days",
    "pack_events", "pack_quotes", "unpack_events", "unpack_quotes",
]

IMPLEMENTATION = "compiled"
