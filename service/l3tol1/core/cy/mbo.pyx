# cython: language_level=3, cdivision=True
"""The compiled core's Databento MBO parser: DBN records (whole records, as bytes) to an
`EventBatch` and rejects (SPEC §12), by the rules of core/mbo.py's `MboParser`. MBO records are
read in place; the rare others (symbol mappings, errors, rejects) go to the reference's
functions."""

from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE

from l3tol1.core.cy.constants cimport (
    ADD, CANCEL, F_LAST, HEADER_SIZE, MAX_TS, MBO_AT_ACTION, MBO_AT_FLAGS, MBO_AT_INSTRUMENT,
    MBO_AT_ORDER_ID, MBO_AT_PRICE, MBO_AT_PUBLISHER, MBO_AT_SEQUENCE, MBO_AT_SIDE, MBO_AT_SIZE,
    MBO_AT_TS_EVENT, MBO_AT_TS_RECV, MBO_SIZE, NS_PER_DAY, RTYPE_ERROR, RTYPE_MBO,
    RTYPE_SYMBOL_MAPPING, SIDE_NONE, UNDEF_PRICE, UPDATE,
)
from l3tol1.core.cy.records cimport (
    Ev, EventBatch, InstrumentTable, U64Table, arena_put, write_u64,
)

from l3tol1.core.mbo import _ACTIONS, _SIDES, ERRORS_KEPT, describe_record, error_text
from l3tol1.core.mbo import record_type_name, symbol_mapping
from l3tol1.core.records import Reason, Reject


# -- Databento MBO records -------------------------------------------------------------------------

# Each action and side byte's value, -1 where it has none: the Python core's tables.
cdef int8_t ACTION_OF[256]
cdef int8_t SIDE_OF[256]
memset(ACTION_OF, -1, 256)
memset(SIDE_OF, -1, 256)
for _char, _value in _ACTIONS.items():
    ACTION_OF[ord(_char)] = _value
for _char, _value in _SIDES.items():
    SIDE_OF[ord(_char)] = _value
del _char, _value

# The books met: (publisher << 32 | instrument_id) -> the instrument index of its key << DAY_BITS
# | the day of its last record (days are below 2^17: ts_recv is below 2^63).
cdef enum:
    DAY_BITS = 20
cdef int64_t DAY_MASK = (1 << DAY_BITS) - 1


cdef class MboParser:
    """Databento's DBN records (whole records, as bytes) to events and rejects (SPEC §12), by
    the rules of core/mbo.py's `MboParser`: records walked by their length, MBO records
    converted here, the rare others (symbol mappings, errors, rejects) by the reference's
    functions."""

    cdef object namer
    cdef public object metadata
    cdef public list errors  # (record index, text) of the first error records
    cdef InstrumentTable table
    cdef int size, ts_out
    # the books met: (publisher << 32 | instrument_id) + 1 -> the instrument index of the
    # book's key << DAY_BITS | the day of its last record (every record looks its book up here)
    cdef U64Table books
    cdef int64_t counts[256]
    cdef int64_t types[256]

    def __init__(self, InstrumentTable table not None, metadata, namer):
        self.metadata = metadata
        self.namer = namer
        namer.symbols = metadata.symbols
        self.table = table
        self.size = metadata.record_size
        self.ts_out = metadata.record_size - MBO_SIZE
        self.books = U64Table()
        self.errors = []
        memset(self.counts, 0, sizeof(self.counts))
        memset(self.types, 0, sizeof(self.types))

    @property
    def by_action(self):
        """Records read, by action."""
        return {chr(c): int(self.counts[c]) for c in range(256) if self.counts[c]}

    @property
    def by_type(self):
        """Records read, by type, sorted by name."""
        return dict(sorted((record_type_name(t), int(self.types[t]))
                           for t in range(256) if self.types[t]))

    def parse(self, bytes data not None, Py_ssize_t first_record):
        """Convert whole records numbered from ``first_record``."""
        cdef EventBatch events = EventBatch(self.table)
        cdef list rejects = []
        cdef const char* base = PyBytes_AS_STRING(data)
        cdef Py_ssize_t end = PyBytes_GET_SIZE(data), at = 0, index = first_record, length
        cdef const char* r
        cdef uint8_t rtype, flags, action_char, side_char
        cdef uint16_t publisher
        cdef uint32_t instrument_id, size, sequence
        cdef uint64_t order_id, ts_recv, ts_event, book
        cdef int64_t price, day, known
        cdef Py_ssize_t slot
        cdef U64Table books = self.books
        cdef int action, side, reason
        cdef Ev* e
        cdef char digits[24]
        cdef int ndigits
        events.reserve(end // self.size)  # about one event a record: the array grows once
        while at < end:
            r = base + at
            length = <Py_ssize_t>(<uint8_t>r[0]) * 4
            if length < HEADER_SIZE or length > end - at:
                rejects.append(Reject(index, Reason.RECORD, describe_record(data, at, end - at)))
                break
            rtype = <uint8_t>r[1]
            self.types[rtype] += 1
            if rtype != RTYPE_MBO:
                if rtype == RTYPE_SYMBOL_MAPPING:
                    mapping = symbol_mapping(data[at:at + length], self.ts_out)
                    if mapping is None:
                        rejects.append(Reject(index, Reason.RECORD,
                                              describe_record(data, at, length)))
                    else:
                        self.namer.learn(*mapping)
                elif rtype == RTYPE_ERROR and self.types[rtype] <= ERRORS_KEPT:
                    self.errors.append((index, error_text(data[at:at + length], self.ts_out)))
                at += length
                index += 1
                continue
            if length != self.size:
                rejects.append(Reject(index, Reason.RECORD, describe_record(data, at, length)))
                at += length
                index += 1
                continue
            memcpy(&publisher, r + MBO_AT_PUBLISHER, 2)
            memcpy(&instrument_id, r + MBO_AT_INSTRUMENT, 4)
            memcpy(&ts_event, r + MBO_AT_TS_EVENT, 8)
            memcpy(&order_id, r + MBO_AT_ORDER_ID, 8)
            memcpy(&price, r + MBO_AT_PRICE, 8)
            memcpy(&size, r + MBO_AT_SIZE, 4)
            flags = <uint8_t>r[MBO_AT_FLAGS]
            action_char = <uint8_t>r[MBO_AT_ACTION]
            side_char = <uint8_t>r[MBO_AT_SIDE]
            memcpy(&ts_recv, r + MBO_AT_TS_RECV, 8)
            memcpy(&sequence, r + MBO_AT_SEQUENCE, 4)
            self.counts[action_char] += 1
            action = ACTION_OF[action_char]
            side = SIDE_OF[side_char]
            reason = 0
            # 2^64 - 1 is Databento's undefined time
            if ts_recv > <uint64_t>MAX_TS or ts_event > <uint64_t>MAX_TS:
                reason = 5
            elif action < 0:
                reason = 2
            elif action == ADD or action == UPDATE or action == CANCEL:  # they change an order
                if side < 0 or side == SIDE_NONE:
                    reason = 3
                elif action <= UPDATE and price == UNDEF_PRICE:
                    reason = 4
            if reason:
                rejects.append(Reject(index, (Reason.RECORD, Reason.ACTION, Reason.SIDE,
                                              Reason.PRICE, Reason.TIME)[reason - 1],
                                      describe_record(data, at, length)))
                at += length
                index += 1
                continue
            e = events.add()
            # The namer sees a book's first record of each day: that one fixes the day's name.
            book = ((<uint64_t>publisher << 32) | instrument_id) + 1
            day = <int64_t>ts_recv // NS_PER_DAY
            slot = books.slot(book)
            known = books.values[slot]
            if books.keys[slot] == 0 or (known & DAY_MASK) != day:
                name = self.namer.key(publisher, instrument_id, ts_recv, "")
                e.inst = self.table.index(name)
                books.put(book, (<int64_t>e.inst << DAY_BITS) | day)
            else:
                e.inst = <int32_t>(known >> DAY_BITS)
            e.seq = sequence
            e.action = <uint8_t>action
            e.side = <uint8_t>(side if side >= 0 else SIDE_NONE)
            e.price = price  # every action's, for the output schemas' rows (SPEC §14)
            e.qty = size
            e.line = index
            e.last = 1 if flags & F_LAST else 0
            e.time_ns = <int64_t>ts_recv
            e.ts_event = <int64_t>ts_event
            e.time = ""
            e.time_size = 0
            e.raw = ""
            e.raw_size = 0
            ndigits = write_u64(digits, order_id)
            e.oid = arena_put(&events.arena, digits, ndigits)
            e.oid_size = ndigits
            at += length
            index += 1
        return events, rejects
