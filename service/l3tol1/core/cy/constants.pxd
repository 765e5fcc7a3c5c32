# The values the compiled core shares with the Python core, declared once for every module of
# the compiled core. The Python core defines them (records.py, numbers.py, mbo.py, wire.py...);
# `l3tol1.core._compiled` checks, when it is imported, that each value here equals the Python
# core's (core/constants.py), and refuses to load otherwise: a mismatch fails at import, never
# in a row.

from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t

# Action (records.py): what an event does to the book.
cdef enum:
    ADD = 0
    UPDATE = 1
    DELETE = 2
    TRADE = 3
    CANCEL = 4
    CLEAR = 5
    NONE = 6
    PRINT = 7  # Databento `T`: a trade, reported; no change to the book
    FILL = 8  # Databento `F`: a fill, reported; no change to the book

# Side (records.py): index 0 and 1 of every per-side pair.
cdef enum:
    BUY = 0
    SELL = 1
    SIDE_NONE = 2  # Databento `N`: only on an event that changes no order

# Anomaly (records.py): each kind's place in the enum's order, which indexes the counters.
cdef enum:
    A_ADD_LIVE = 0
    A_UPDATE_UNKNOWN = 1
    A_DELETE_UNKNOWN = 2
    A_TRADE_UNKNOWN = 3
    A_TRADE_EXCEEDS = 4
    A_CANCEL_UNKNOWN = 5
    A_CANCEL_EXCEEDS = 6
    ANOMALY_KINDS = 7

# schemas.py: the flags of a row (SPEC §14)
cdef enum:
    FLAG_CROSSED = 1
    FLAG_LOCKED = 2
    FLAG_GAP = 4
    FLAG_ANOMALY = 8

cdef enum:
    PRICE_DIGITS = 9  # numbers.py: fraction digits of a price
    MAX_INSTRUMENT_BYTES = 64  # csv_parser.py
    COMPACT_SLACK = 1024  # book.py: a heap this much over its live levels is rebuilt
    GAP_MEMORY = 100000  # feed.py: skipped gaps remembered to tell late from duplicate
    # mbo.py: DBN records
    HEADER_SIZE = 16
    RTYPE_MBO = 0xA0
    RTYPE_SYMBOL_MAPPING = 0x16
    RTYPE_ERROR = 0x15
    F_LAST = 0x80
    MBO_SIZE = 56  # an MBO record without ts_out
    # where the fields read are in an MBO record
    MBO_AT_PUBLISHER = 2
    MBO_AT_INSTRUMENT = 4
    MBO_AT_TS_EVENT = 8
    MBO_AT_ORDER_ID = 16
    MBO_AT_PRICE = 24
    MBO_AT_SIZE = 32
    MBO_AT_FLAGS = 36
    MBO_AT_ACTION = 38
    MBO_AT_SIDE = 39
    MBO_AT_TS_RECV = 40
    MBO_AT_SEQUENCE = 52
    # wire.py: a canonical CSV time packed into 60 bits, field widths from the microseconds up
    TIME_BITS_MICROS = 20
    TIME_BITS_SECOND = 6
    TIME_BITS_MINUTE = 6
    TIME_BITS_HOUR = 5
    TIME_BITS_DAY = 5
    TIME_BITS_MONTH = 4
    TIME_BITS_YEAR = 14

cdef extern from *:
    """
    #define L3TOL1_PRICE_SCALE INT64_C(1000000000)
    #define L3TOL1_MAX_PRICE INT64_C(9223372036854775807)
    #define L3TOL1_MAX_QTY UINT64_C(4294967295)
    #define L3TOL1_MAX_SEQ UINT64_C(18446744073709551615)
    #define L3TOL1_MAX_SEQ_TEXT "18446744073709551615"
    #define L3TOL1_UNDEF_PRICE INT64_C(9223372036854775807)
    #define L3TOL1_MAX_TS INT64_C(9223372036854775807)
    #define L3TOL1_NS_PER_DAY INT64_C(86400000000000)
    #define L3TOL1_PACKED_TIMES (INT64_C(1) << 60)
    #define L3TOL1_EVENTS_MAGIC "L3E2"
    #define L3TOL1_QUOTES_MAGIC "L1Q1"
    """
    const int64_t PRICE_SCALE "L3TOL1_PRICE_SCALE"  # numbers.py: a price is held in 1e-9
    const int64_t MAX_PRICE "L3TOL1_MAX_PRICE"
    const uint64_t MAX_QTY "L3TOL1_MAX_QTY"
    const uint64_t MAX_SEQ "L3TOL1_MAX_SEQ"
    const char* MAX_SEQ_TEXT "L3TOL1_MAX_SEQ_TEXT"  # its 20 digits
    const int64_t UNDEF_PRICE "L3TOL1_UNDEF_PRICE"  # mbo.py: Databento's "no price"
    const int64_t MAX_TS "L3TOL1_MAX_TS"  # mbo.py: the last ts_recv held
    const int64_t NS_PER_DAY "L3TOL1_NS_PER_DAY"
    const int64_t PACKED_TIMES "L3TOL1_PACKED_TIMES"  # wire.py: packed times are below this
    const char* EVENTS_MAGIC "L3TOL1_EVENTS_MAGIC"  # wire.py: the first 4 bytes of a body
    const char* QUOTES_MAGIC "L3TOL1_QUOTES_MAGIC"


# wire.py: the fixed part of each record of a message body (little-endian, no padding).

cdef packed struct WireEv:
    uint64_t seq
    int64_t price
    int64_t qty
    int64_t line
    int64_t time_ns
    int64_t ts_event
    uint8_t action
    uint8_t side
    uint8_t last
    uint8_t pad
    uint32_t inst_size
    uint32_t oid_size
    uint32_t time_size


cdef packed struct WireQt:
    int64_t bid
    int64_t ask
    int64_t bid_size
    int64_t ask_size
    int64_t time_ns
    uint64_t seq
    uint32_t inst_size
    uint32_t time_size
