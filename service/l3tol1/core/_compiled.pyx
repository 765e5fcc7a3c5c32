# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""The compiled core: the Python core's classes, over whole batches in C (issue 11).

The pure-Python modules beside this one are the reference and the fallback; this module keeps
their interfaces and their results, byte for byte (tests run both, and compare them on random
streams). What changes is the data: a batch of events is an `EventBatch`, a C array of
fixed-size records whose strings (order ids, times, the raw line) point into the input's bytes,
never a Python object per event; quotes are a `QuoteBatch` alike. Python objects appear only
where a rare path needs them: a row the fast path does not take (quoted, non-ASCII, invalid: the
Python parser decides it, its event is copied in), a reject, an anomaly, a checkpoint.

- `CsvParser` scans lines and fields with memchr and validates the common row in C; any other
  row goes to the Python parser's `parse_row`, the reference.
- `MboParser` reads Databento's fixed-size records straight from their bytes.
- `Feed` keeps waiting events in an open-addressing table keyed by seq, with a binary heap of
  their seqs; their strings are copied once, into a block of their own.
- `Instruments` keeps every order in one hash table keyed by (instrument, side, order id) and
  every price level in another keyed by (instrument, side, price); each book side has a heap of
  its level prices with lazy deletion, as in the Python core.
- `L1Formatter` writes rows from cached price texts into one growing buffer.
"""

from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memchr, memcmp, memcpy, memset
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8

from l3tol1.core.book import OrderBook
from l3tol1.core.csv_parser import CsvParser as PyCsvParser
from l3tol1.core.csv_parser import too_long_reject
from l3tol1.core.feed import FeedState
from l3tol1.core.instruments import InstrumentsState, InstrumentState
from l3tol1.core.mbo import ERRORS_KEPT, MboMetadata, describe_record, error_text
from l3tol1.core.mbo import record_type_name, symbol_mapping
from l3tol1.core.numbers import format_price
from l3tol1.core.records import Anomaly, Event, Quote, Reason, Reject

IMPLEMENTATION = "compiled"

cdef enum:
    ADD = 0
    UPDATE = 1
    DELETE = 2
    TRADE = 3
    CANCEL = 4
    CLEAR = 5
    NONE = 6

cdef enum:
    A_ADD_LIVE = 0
    A_UPDATE_UNKNOWN = 1
    A_DELETE_UNKNOWN = 2
    A_TRADE_UNKNOWN = 3
    A_TRADE_EXCEEDS = 4
    A_CANCEL_UNKNOWN = 5
    A_CANCEL_EXCEEDS = 6

_ANOMALIES = (
    Anomaly.ADD_LIVE, Anomaly.UPDATE_UNKNOWN, Anomaly.DELETE_UNKNOWN, Anomaly.TRADE_UNKNOWN,
    Anomaly.TRADE_EXCEEDS, Anomaly.CANCEL_UNKNOWN, Anomaly.CANCEL_EXCEEDS,
)
cdef int64_t MAX_PRICE = 9223372036854775807
cdef int64_t UNDEF_PRICE = 9223372036854775807
cdef int64_t MAX_TS = 9223372036854775807  # the last ts_recv held (core/mbo.py)
cdef int DAY_BITS = 20
cdef int64_t DAY_MASK = (1 << 20) - 1
cdef uint64_t MAX_QTY = 4294967295
cdef int64_t COMPACT_SLACK = 1024
cdef int64_t GAP_MEMORY = 100000
cdef int64_t NS_PER_DAY = 86400000000000


# -- memory ----------------------------------------------------------------------------------------

cdef inline void* grow(void* ptr, size_t size) except NULL:
    cdef void* out = realloc(ptr, size)
    if out == NULL:
        raise MemoryError()
    return out


cdef struct Arena:
    # Blocks that never move: pointers into them stay valid until the arena is freed.
    char** blocks
    Py_ssize_t count
    Py_ssize_t capacity
    char* cursor
    size_t left


cdef const char* arena_put(Arena* arena, const char* text, size_t size) except NULL:
    cdef size_t block
    cdef char* out
    if size == 0:
        return ""
    if size > arena.left:
        block = 65536 if size <= 8192 else size
        if arena.count == arena.capacity:
            arena.capacity = arena.capacity * 2 + 8
            arena.blocks = <char**>grow(arena.blocks, arena.capacity * sizeof(char*))
        arena.cursor = <char*>malloc(block)
        if arena.cursor == NULL:
            raise MemoryError()
        arena.blocks[arena.count] = arena.cursor
        arena.count += 1
        arena.left = block
    out = arena.cursor
    memcpy(out, text, size)
    arena.cursor += size
    arena.left -= size
    return out


cdef void arena_free(Arena* arena) noexcept:
    cdef Py_ssize_t i
    for i in range(arena.count):
        free(arena.blocks[i])
    free(arena.blocks)
    memset(arena, 0, sizeof(Arena))


cdef inline uint64_t mix(uint64_t h) noexcept nogil:
    h ^= h >> 33
    h *= 0xff51afd7ed558ccdULL
    h ^= h >> 33
    h *= 0xc4ceb9fe1a85ec53ULL
    h ^= h >> 33
    return h


cdef inline uint64_t hash_bytes(const char* text, Py_ssize_t size, uint64_t seed) noexcept nogil:
    """A hash of ``size`` bytes, never 0 (an empty slot) nor 1 (a removed one)."""
    cdef uint64_t h = seed ^ (<uint64_t>size * 0x9E3779B97F4A7C15ULL)
    cdef uint64_t word
    cdef Py_ssize_t i = 0
    while i + 8 <= size:
        memcpy(&word, text + i, 8)
        h = (h ^ word) * 0xbf58476d1ce4e5b9ULL
        h ^= h >> 31
        i += 8
    if i < size:
        word = 0
        memcpy(&word, text + i, size - i)
        h = (h ^ word) * 0x94d049bb133111ebULL
    return mix(h) | 2


cdef inline str text_of(const char* text, Py_ssize_t size):
    return PyUnicode_DecodeUTF8(text, size, NULL)


# -- instrument names ------------------------------------------------------------------------------

cdef uint32_t CRC_TABLE[256]


cdef void crc_table_init() noexcept:
    cdef uint32_t c
    cdef int n, k
    for n in range(256):
        c = <uint32_t>n
        for k in range(8):
            c = (<uint32_t>0xEDB88320U ^ (c >> 1)) if c & 1 else (c >> 1)
        CRC_TABLE[n] = c


crc_table_init()


cdef inline uint32_t crc32(const char* text, Py_ssize_t size) noexcept nogil:
    """zlib's CRC-32 (the partition hash of `core.wire.partition_of`)."""
    cdef uint32_t c = <uint32_t>0xFFFFFFFFU
    cdef Py_ssize_t i
    for i in range(size):
        c = CRC_TABLE[(c ^ <uint8_t>text[i]) & 0xFF] ^ (c >> 8)
    return c ^ <uint32_t>0xFFFFFFFFU


cdef struct NameSlot:
    uint64_t hash
    int32_t index
    int32_t size
    char* text


cdef class InstrumentTable:
    """Every instrument name met, interned: an event or quote holds its index. Index 0 is ""
    (the instrument of a feed without an instrument column)."""

    cdef NameSlot* slots
    cdef Py_ssize_t capacity
    cdef public list names
    cdef list fields  # each name as a CSV field, bytes
    # By index: each name's bytes (the slot's), size and CRC-32 (its partition, SPEC §13).
    cdef const char** text_at
    cdef int32_t* size_at
    cdef uint32_t* crc_at
    cdef Py_ssize_t at_cap

    def __cinit__(self):
        self.capacity = 64
        self.slots = <NameSlot*>calloc(self.capacity, sizeof(NameSlot))
        if self.slots == NULL:
            raise MemoryError()
        self.at_cap = 0
        self.text_at = NULL
        self.size_at = NULL
        self.crc_at = NULL
        self.names = []
        self.fields = []
        self.intern(b"", 0)

    def __dealloc__(self):
        cdef Py_ssize_t i
        if self.slots != NULL:
            for i in range(self.capacity):
                free(self.slots[i].text)
            free(self.slots)
        free(self.text_at)
        free(self.size_at)
        free(self.crc_at)

    cdef int32_t intern(self, const char* text, Py_ssize_t size) except -1:
        cdef uint64_t h = hash_bytes(text, size, 77)
        cdef Py_ssize_t mask = self.capacity - 1
        cdef Py_ssize_t i = <Py_ssize_t>(h & mask)
        cdef NameSlot* slot
        cdef int32_t index
        cdef char* copy
        while True:
            slot = &self.slots[i]
            if slot.hash == 0:
                break
            if slot.hash == h and slot.size == size and memcmp(slot.text, text, size) == 0:
                return slot.index
            i = (i + 1) & mask
        # Everything that can fail comes first (a name that is not UTF-8, from a message body;
        # no memory): the table is changed whole or not at all.
        name = text_of(text, size)
        field = csv_field(name).encode()
        index = <int32_t>len(self.names)
        if index == self.at_cap:
            self.at_cap = self.at_cap * 2 + 64
            self.text_at = <const char**>grow(self.text_at, self.at_cap * sizeof(char*))
            self.size_at = <int32_t*>grow(self.size_at, self.at_cap * sizeof(int32_t))
            self.crc_at = <uint32_t*>grow(self.crc_at, self.at_cap * sizeof(uint32_t))
        copy = <char*>malloc(size + 1)
        if copy == NULL:
            raise MemoryError()
        memcpy(copy, text, size)
        slot.hash = h
        slot.size = <int32_t>size
        slot.text = copy
        slot.index = index
        self.text_at[index] = copy
        self.size_at[index] = <int32_t>size
        self.crc_at[index] = crc32(text, size)
        self.names.append(name)
        self.fields.append(field)
        if len(self.names) * 2 > self.capacity:
            self._grow()
        return <int32_t>(len(self.names) - 1)

    cdef void _grow(self) except *:
        cdef NameSlot* old = self.slots
        cdef Py_ssize_t old_capacity = self.capacity, i, j, mask
        self.capacity *= 2
        self.slots = <NameSlot*>calloc(self.capacity, sizeof(NameSlot))
        if self.slots == NULL:
            raise MemoryError()
        mask = self.capacity - 1
        for i in range(old_capacity):
            if old[i].hash:
                j = <Py_ssize_t>(old[i].hash & mask)
                while self.slots[j].hash:
                    j = (j + 1) & mask
                self.slots[j] = old[i]
        free(old)

    cpdef int32_t index(self, str name) except -1:
        data = name.encode()
        return self.intern(data, len(data))


def csv_field(str text):
    """``text`` as one CSV field: quoted (RFC 4180) when it holds a comma, quote or line end."""
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


# -- events ----------------------------------------------------------------------------------------

cdef struct Ev:
    uint64_t seq
    int64_t price
    int64_t qty
    int64_t line
    int64_t time_ns  # -1: the time is the text at `time`
    const char* oid
    const char* time
    const char* raw
    int32_t oid_size
    int32_t time_size
    int32_t raw_size
    int32_t inst
    uint8_t action
    uint8_t side
    uint8_t last


cdef class EventBatch:
    """Events in a C array; their strings point into the bytes in ``keep`` or the arena."""

    cdef Ev* ev
    cdef Py_ssize_t n
    cdef Py_ssize_t capacity
    cdef list keep
    cdef Arena arena
    cdef InstrumentTable table

    def __cinit__(self, InstrumentTable table, events=()):
        self.table = table
        self.keep = []
        self.capacity = 0
        self.n = 0
        self.ev = NULL
        memset(&self.arena, 0, sizeof(Arena))

    def __init__(self, InstrumentTable table, events=()):
        """A batch of these events (Python `Event`s; none: an empty batch)."""
        self.extend(events)

    def __dealloc__(self):
        free(self.ev)
        arena_free(&self.arena)

    def __len__(self):
        return self.n

    def __iter__(self):
        cdef Py_ssize_t i
        for i in range(self.n):
            yield self.event(&self.ev[i])

    def __getitem__(self, Py_ssize_t i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.event(&self.ev[i])

    cdef Ev* add(self) except NULL:
        if self.n == self.capacity:
            self.capacity = self.capacity * 2 + 256
            self.ev = <Ev*>grow(self.ev, self.capacity * sizeof(Ev))
        self.n += 1
        return &self.ev[self.n - 1]

    cdef void own(self, Ev* e) except *:
        """Copy the strings of event ``e`` (one of this batch's) into the arena."""
        e.oid = arena_put(&self.arena, e.oid, e.oid_size)
        if e.time_ns < 0:
            e.time = arena_put(&self.arena, e.time, e.time_size)
        e.raw = arena_put(&self.arena, e.raw, e.raw_size)

    cdef void append_event(self, object event) except *:
        """Add a Python `Event` (from the reference parser, or a checkpoint)."""
        cdef Ev* e = self.add()
        oid = event.order_id.encode()
        raw = event.raw.encode()
        name = event.instrument.encode()
        e.seq = event.seq
        e.action = event.action
        e.side = event.side
        e.price = event.price
        e.qty = event.qty
        e.line = event.line
        e.last = 1 if event.last else 0
        e.inst = self.table.intern(name, len(name))
        e.oid = arena_put(&self.arena, oid, len(oid))
        e.oid_size = <int32_t>len(oid)
        e.raw = arena_put(&self.arena, raw, len(raw))
        e.raw_size = <int32_t>len(raw)
        if isinstance(event.time, int):
            e.time_ns = event.time
            e.time = ""
            e.time_size = 0
        else:
            time = event.time.encode()
            e.time_ns = -1
            e.time = arena_put(&self.arena, time, len(time))
            e.time_size = <int32_t>len(time)

    cdef object event(self, Ev* e):
        return event_of(e, self.table)

    def extend(self, events):
        """Add Python events (a parser that is not compiled hands these)."""
        for event in events:
            self.append_event(event)


cdef object event_of(Ev* e, InstrumentTable table):
    time = e.time_ns if e.time_ns >= 0 else text_of(e.time, e.time_size)
    return Event(
        e.seq, e.action, table.names[e.inst], text_of(e.oid, e.oid_size), e.side, e.price,
        e.qty, time, e.line, text_of(e.raw, e.raw_size), e.last != 0,
    )


# -- quotes ----------------------------------------------------------------------------------------

cdef struct Qt:
    int64_t bid
    int64_t ask
    int64_t bid_size
    int64_t ask_size
    int64_t time_ns
    uint64_t seq
    const char* time
    int32_t time_size
    int32_t inst


cdef class QuoteBatch:
    """L1 quotes in a C array; their times point into the events' batches, kept in ``keep``."""

    cdef Qt* q
    cdef Py_ssize_t n
    cdef Py_ssize_t capacity
    cdef list keep
    cdef Arena arena  # times rendered from a message body's packed form
    cdef InstrumentTable table

    def __cinit__(self, InstrumentTable table):
        self.table = table
        self.keep = []
        self.q = NULL
        self.n = self.capacity = 0
        memset(&self.arena, 0, sizeof(Arena))

    def __dealloc__(self):
        free(self.q)
        arena_free(&self.arena)

    def __len__(self):
        return self.n

    def __iter__(self):
        cdef Py_ssize_t i
        cdef Qt* q
        for i in range(self.n):
            q = &self.q[i]
            time = q.time_ns if q.time_ns >= 0 else text_of(q.time, q.time_size)
            yield Quote(time, self.table.names[q.inst], q.bid, q.ask, q.bid_size, q.ask_size,
                        q.seq)

    cdef Qt* add(self) except NULL:
        if self.n == self.capacity:
            self.capacity = self.capacity * 2 + 256
            self.q = <Qt*>grow(self.q, self.capacity * sizeof(Qt))
        self.n += 1
        return &self.q[self.n - 1]

    def rename(self, name):
        """Name each quote by ``name(instrument, time)``: Databento's rows by their symbol on
        their day (asked once per instrument and day)."""
        cdef dict cache = {}
        cdef Py_ssize_t i
        cdef Qt* q
        for i in range(self.n):
            q = &self.q[i]
            key = (q.inst, q.time_ns // NS_PER_DAY)
            index = cache.get(key)
            if index is None:
                index = cache[key] = self.table.index(name(self.table.names[q.inst], q.time_ns))
            q.inst = index


# -- numbers (the rules of numbers.py, in C) -------------------------------------------------------

cdef inline bint all_digits(const char* p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if p[i] < 48 or p[i] > 57:
            return False
    return True


cdef inline bint parse_seq(const char* p, Py_ssize_t n, uint64_t* out) noexcept nogil:
    cdef uint64_t value = 0
    cdef Py_ssize_t i
    if n == 0 or not all_digits(p, n):
        return False
    while n > 1 and p[0] == 48:
        p += 1
        n -= 1
    if n > 20 or (n == 20 and memcmp(p, b"18446744073709551615", 20) > 0):
        return False
    for i in range(n):
        value = value * 10 + <uint64_t>(p[i] - 48)
    out[0] = value
    return True


cdef inline bint parse_qty(const char* p, Py_ssize_t n, int64_t* out) noexcept nogil:
    cdef Py_ssize_t digits = 0, i
    cdef uint64_t value = 0
    while digits < n and 48 <= p[digits] <= 57:
        digits += 1
    if digits == 0:
        return False
    if digits < n:
        if p[digits] != 46:  # "."
            return False
        for i in range(digits + 1, n):
            if p[i] != 48:
                return False
    while digits > 1 and p[0] == 48:
        p += 1
        digits -= 1
    if digits > 10:
        return False
    for i in range(digits):
        value = value * 10 + <uint64_t>(p[i] - 48)
    if value > MAX_QTY:
        return False
    out[0] = <int64_t>value
    return True


cdef inline bint parse_price(const char* p, Py_ssize_t n, int64_t* out) noexcept nogil:
    cdef Py_ssize_t whole = 0, i, fraction_start, fraction = 0
    cdef uint64_t value = 0, scale = 1000000000
    while whole < n and 48 <= p[whole] <= 57:
        whole += 1
    fraction_start = whole + 1
    if whole < n:
        if p[whole] != 46:
            return False
        if not all_digits(p + fraction_start, n - fraction_start):
            return False
        fraction = n - fraction_start
    if whole == 0 and fraction == 0:
        return False
    while fraction > 0 and p[fraction_start + fraction - 1] == 48:
        fraction -= 1
    i = 0
    while i < whole and p[i] == 48:
        i += 1
    if whole - i > 10 or fraction > 9:
        return False
    for i in range(i, whole):
        value = value * 10 + <uint64_t>(p[i] - 48)
    value *= scale
    for i in range(fraction):
        scale //= 10
        value += <uint64_t>(p[fraction_start + i] - 48) * scale
    if value == 0 or value > <uint64_t>MAX_PRICE:
        return False
    out[0] = <int64_t>value
    return True


cdef inline int two(const char* p) noexcept nogil:
    return (p[0] - 48) * 10 + (p[1] - 48)


cdef inline bint time_is_valid(const char* p, Py_ssize_t n) noexcept nogil:
    """``YYYY-MM-DD HH:MM:SS[.f] UTC``, 0 to 6 fraction digits, a real calendar date."""
    cdef int year, month, day, days
    if n < 23 or n > 30 or memcmp(p + n - 4, b" UTC", 4) != 0:
        return False
    if n > 23 and (p[19] != 46 or not all_digits(p + 20, n - 24)):
        return False
    if (p[4] != 45 or p[7] != 45 or p[10] != 32 or p[13] != 58 or p[16] != 58
            or not all_digits(p, 4) or not all_digits(p + 5, 2) or not all_digits(p + 8, 2)
            or not all_digits(p + 11, 2) or not all_digits(p + 14, 2)
            or not all_digits(p + 17, 2)):
        return False
    year = two(p) * 100 + two(p + 2)
    month = two(p + 5)
    day = two(p + 8)
    if year < 1 or month < 1 or month > 12 or day < 1:
        return False
    if two(p + 11) > 23 or two(p + 14) > 59 or two(p + 17) > 59:
        return False
    if month == 2:
        days = 29 if (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)) else 28
    elif month == 4 or month == 6 or month == 9 or month == 11:
        days = 30
    else:
        days = 31
    return day <= days


# -- the CSV parser --------------------------------------------------------------------------------

cdef enum:
    MAX_FIELDS = 64


# What the fast path must notice in a line's bytes: a comma, or a byte it leaves to the
# reference parser (non-ASCII, a quote, a stray CR); every other byte is 0.
cdef enum:
    BYTE_COMMA = 1
    BYTE_ODD = 2
cdef uint8_t BYTE_CLASS[256]
memset(BYTE_CLASS, 0, 128)
memset(BYTE_CLASS + 128, BYTE_ODD, 128)
BYTE_CLASS[44] = BYTE_COMMA
BYTE_CLASS[34] = BYTE_ODD
BYTE_CLASS[13] = BYTE_ODD


cdef class CsvParser:
    """L3 CSV rows to events and rejects (SPEC §1, §4, §9): the common row in C, any other
    by the reference parser's `parse_row`."""

    cdef object py
    cdef InstrumentTable table
    cdef int field_count, seq_i, time_i, inst_i, max_line
    cdef int oid_i[4]
    cdef int side_i[4]
    cdef int price_i[4]
    cdef int qty_i[4]
    cdef public object instrument_column

    def __init__(self, str header, *, instrument_column=None, max_line=None,
                 InstrumentTable table=None):
        kwargs = {} if max_line is None else {"max_line": max_line}
        self.py = PyCsvParser(header, instrument_column=instrument_column, **kwargs)
        self.table = table if table is not None else InstrumentTable()
        self.instrument_column = self.py.instrument_column
        self.field_count = self.py.field_count
        self.max_line = self.py.max_line
        self.seq_i = self.py._seq_i
        self.time_i = self.py._time_i
        self.inst_i = self.py._inst_i
        for action, id_i, side_i, price_i, qty_i in self.py._actions:
            self.oid_i[action] = id_i
            self.side_i[action] = side_i
            self.price_i[action] = price_i
            self.qty_i[action] = qty_i
        if self.field_count > MAX_FIELDS:
            self.field_count = -1  # every row to the reference parser

    def parse_row(self, str text, line):
        """The reference's verdict on one row."""
        return self.py.parse_row(text, line)

    def parse(self, bytes data, Py_ssize_t first_line):
        """Parse whole lines, each ending in a newline, numbered from ``first_line``."""
        cdef EventBatch events = EventBatch(self.table)
        cdef list rejects = []
        cdef const char* p = PyBytes_AS_STRING(data)
        cdef const char* end = p + PyBytes_GET_SIZE(data)
        cdef const char* newline
        cdef Py_ssize_t line = first_line
        events.keep.append(data)
        while p < end:
            newline = <const char*>memchr(p, 10, end - p)
            if newline == NULL:
                newline = end
            if not self.fast(p, newline - p, line, events):
                self.slow(p, newline - p, line, events, rejects)
            p = newline + 1
            line += 1
        return events, rejects

    cdef bint fast(self, const char* p, Py_ssize_t size, Py_ssize_t line, EventBatch events) except -1:
        cdef Py_ssize_t starts[MAX_FIELDS + 1]
        cdef Py_ssize_t count = 0, i, n = size
        cdef int action = -1, a
        cdef uint8_t c
        cdef const char* f
        cdef Py_ssize_t flen
        cdef uint64_t seq
        cdef int64_t price = 0, qty = 0
        cdef Ev* e
        cdef int side
        if size > self.max_line or self.field_count < 0:
            return False
        if n and p[n - 1] == 13:  # one CR before the newline
            n -= 1
        starts[0] = 0
        for i in range(n):
            c = BYTE_CLASS[<uint8_t>p[i]]  # one load and one branch for most bytes
            if c:
                if c == BYTE_ODD:
                    return False
                count += 1
                if count >= self.field_count:
                    return False
                starts[count] = i + 1
        if count + 1 != self.field_count:
            return False
        starts[count + 1] = n + 1
        for a in range(4):
            if starts[self.oid_i[a] + 1] - 1 > starts[self.oid_i[a]]:
                if action >= 0:
                    return False
                action = a
        if action < 0:
            return False
        # side
        f = p + starts[self.side_i[action]]
        flen = starts[self.side_i[action] + 1] - 1 - starts[self.side_i[action]]
        if flen == 3 and memcmp(f, b"BUY", 3) == 0:
            side = 0
        elif flen == 4 and memcmp(f, b"SELL", 4) == 0:
            side = 1
        else:
            return False
        f = p + starts[self.seq_i]
        if not parse_seq(f, starts[self.seq_i + 1] - 1 - starts[self.seq_i], &seq):
            return False
        if action != DELETE:
            f = p + starts[self.price_i[action]]
            if not parse_price(f, starts[self.price_i[action] + 1] - 1 - starts[self.price_i[action]], &price):
                return False
            f = p + starts[self.qty_i[action]]
            if not parse_qty(f, starts[self.qty_i[action] + 1] - 1 - starts[self.qty_i[action]], &qty):
                return False
            if qty == 0 and action == ADD:
                return False
        f = p + starts[self.time_i]
        flen = starts[self.time_i + 1] - 1 - starts[self.time_i]
        if not time_is_valid(f, flen):
            return False
        e = events.add()
        if self.inst_i >= 0:
            i = starts[self.inst_i + 1] - 1 - starts[self.inst_i]
            if i < 1 or i > 64:
                events.n -= 1
                return False
            e.inst = self.table.intern(p + starts[self.inst_i], i)
        else:
            e.inst = 0
        e.seq = seq
        e.action = <uint8_t>action
        e.side = <uint8_t>side
        e.price = price
        e.qty = qty
        e.line = line
        e.last = 1
        e.time_ns = -1
        e.time = f
        e.time_size = <int32_t>flen
        e.oid = p + starts[self.oid_i[action]]
        e.oid_size = <int32_t>(starts[self.oid_i[action] + 1] - 1 - starts[self.oid_i[action]])
        e.raw = p
        e.raw_size = <int32_t>n
        return True

    cdef void slow(self, const char* p, Py_ssize_t size, Py_ssize_t line, EventBatch events,
                   list rejects) except *:
        raw = p[:size]
        if size > self.max_line:
            rejects.append(too_long_reject(line, raw, self.max_line))
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            rejects.append(Reject(line, Reason.UTF8, raw.decode("utf-8", "backslashreplace")))
            return
        result = self.py.parse_row(text, line)
        if type(result) is Reject:
            rejects.append(result)
        else:
            events.append_event(result)


# -- Databento MBO records -------------------------------------------------------------------------

cdef int8_t ACTION_OF[256]
cdef int8_t SIDE_OF[256]
memset(ACTION_OF, -1, 256)
memset(SIDE_OF, -1, 256)
ACTION_OF[ord("A")] = ADD
ACTION_OF[ord("M")] = UPDATE
ACTION_OF[ord("C")] = CANCEL
ACTION_OF[ord("R")] = CLEAR
ACTION_OF[ord("T")] = NONE
ACTION_OF[ord("F")] = NONE
ACTION_OF[ord("N")] = NONE
SIDE_OF[ord("B")] = 0
SIDE_OF[ord("A")] = 1


cdef inline int write_u64(char* out, uint64_t value) noexcept nogil:
    cdef char digits[24]
    cdef int n = 0, i
    if value == 0:
        out[0] = 48
        return 1
    while value:
        digits[n] = <char>(48 + value % 10)
        value //= 10
        n += 1
    for i in range(n):
        out[i] = digits[n - 1 - i]
    return n


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
    # (publisher << 32 | instrument_id) -> the instrument index of its key << DAY_BITS | the
    # day of its last record (days are below 2^17: ts_recv is below 2^63)
    cdef dict keys
    cdef int64_t counts[256]
    cdef int64_t types[256]

    def __init__(self, metadata, namer, *, InstrumentTable table=None):
        self.metadata = metadata
        self.namer = namer
        namer.symbols = metadata.symbols
        self.table = table if table is not None else InstrumentTable()
        self.size = metadata.record_size
        self.ts_out = metadata.record_size - 56
        self.keys = {}
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

    def parse(self, bytes data, Py_ssize_t first_record):
        """Convert whole records numbered from ``first_record``."""
        cdef EventBatch events = EventBatch(self.table)
        cdef list rejects = []
        cdef const char* base = PyBytes_AS_STRING(data)
        cdef Py_ssize_t end = PyBytes_GET_SIZE(data), at = 0, index = first_record, length
        cdef const char* r
        cdef uint8_t rtype, flags, action_char, side_char
        cdef uint16_t publisher
        cdef uint32_t instrument_id, size, sequence
        cdef uint64_t order_id, ts_recv, key
        cdef int64_t price, day
        cdef int action, side, reason
        cdef Ev* e
        cdef char digits[24]
        cdef int ndigits
        while at < end:
            r = base + at
            length = <Py_ssize_t>(<uint8_t>r[0]) * 4
            if length < 16 or length > end - at:
                rejects.append(Reject(index, Reason.RECORD, describe_record(data, at, end - at)))
                break
            rtype = <uint8_t>r[1]
            self.types[rtype] += 1
            if rtype != 160:
                if rtype == 0x16:
                    mapping = symbol_mapping(data[at:at + length], self.ts_out)
                    if mapping is None:
                        rejects.append(Reject(index, Reason.RECORD,
                                              describe_record(data, at, length)))
                    else:
                        self.namer.learn(*mapping)
                elif rtype == 0x15 and self.types[rtype] <= ERRORS_KEPT:
                    self.errors.append((index, error_text(data[at:at + length], self.ts_out)))
                at += length
                index += 1
                continue
            if length != self.size:
                rejects.append(Reject(index, Reason.RECORD, describe_record(data, at, length)))
                at += length
                index += 1
                continue
            memcpy(&publisher, r + 2, 2)
            memcpy(&instrument_id, r + 4, 4)
            memcpy(&order_id, r + 16, 8)
            memcpy(&price, r + 24, 8)
            memcpy(&size, r + 32, 4)
            flags = <uint8_t>r[36]
            action_char = <uint8_t>r[38]
            side_char = <uint8_t>r[39]
            memcpy(&ts_recv, r + 40, 8)
            memcpy(&sequence, r + 52, 4)
            self.counts[action_char] += 1
            action = ACTION_OF[action_char]
            side = SIDE_OF[side_char]
            reason = 0
            if ts_recv > <uint64_t>MAX_TS:  # 2^64 - 1 is Databento's undefined time
                reason = 5
            elif action < 0:
                reason = 2
            elif action <= CANCEL and action != DELETE and action != TRADE:
                if side < 0:
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
            key = (<uint64_t>publisher << 32) | instrument_id
            day = <int64_t>ts_recv // NS_PER_DAY
            known = self.keys.get(key)
            if known is None or (<int64_t>known & DAY_MASK) != day:
                name = self.namer.key(publisher, instrument_id, ts_recv, "")
                e.inst = self.table.index(name)
                self.keys[key] = (<int64_t>e.inst << DAY_BITS) | day
            else:
                e.inst = <int32_t>(<int64_t>known >> DAY_BITS)
            e.seq = sequence
            e.action = <uint8_t>action
            e.side = <uint8_t>(side if side >= 0 else 0)
            e.price = price if action <= UPDATE else 0
            e.qty = size
            e.line = index
            e.last = 1 if flags & 0x80 else 0
            e.time_ns = <int64_t>ts_recv
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


# -- the feed (SPEC §5) ----------------------------------------------------------------------------

# A waiting event is a compact record: the usual CSV time ("YYYY-MM-DD HH:MM:SS.ffffff UTC") and
# a decimal order id are packed into integers and written out again, byte for byte, when the
# event is released; any other text is kept as it is. About 100 bytes per waiting event with
# its index, heap and arrival, where a Python event costs about 580.

cdef enum:
    TIME_NS = 0  # `time` is Databento's nanoseconds
    TIME_PACKED = 1  # `time` holds the fields of a 30-byte CSV time
    TIME_TEXT = 2  # the time text is in `strings`
    OID_PACKED = 4  # `oid` is the value of a decimal order id without leading zeros
    REC_IN_USE = 8


cdef struct Rec:
    uint64_t seq
    int64_t price
    int64_t qty
    int64_t line  # when free: the next free record
    uint64_t time
    uint64_t oid
    char* strings  # the order id (unless packed), then the time (if text)
    int32_t inst
    int32_t oid_size
    int32_t time_size
    uint8_t action
    uint8_t side
    uint8_t last
    uint8_t flags


cdef inline int64_t digits_at(const char* t, int at, int n) noexcept:
    """The value of the ``n`` decimal digits at ``t + at``, or -1 if one is not a digit."""
    cdef int64_t value = 0
    cdef int i
    for i in range(at, at + n):
        if t[i] < 48 or t[i] > 57:
            return -1
        value = value * 10 + (t[i] - 48)
    return value


cdef inline bint pack_time(const char* t, Py_ssize_t size, uint64_t* out) noexcept:
    """The fields of a canonical CSV time, when ``t`` is one that `render_time` writes back."""
    cdef int64_t year, month, day, hour, minute, second, micros
    if size != 30 or memcmp(t + 26, b" UTC", 4) != 0:
        return False
    if t[4] != 45 or t[7] != 45 or t[10] != 32 or t[13] != 58 or t[16] != 58 or t[19] != 46:
        return False
    year = digits_at(t, 0, 4)
    month = digits_at(t, 5, 2)
    day = digits_at(t, 8, 2)
    hour = digits_at(t, 11, 2)
    minute = digits_at(t, 14, 2)
    second = digits_at(t, 17, 2)
    micros = digits_at(t, 20, 6)
    if year < 0 or micros < 0 or not (0 <= month <= 15 and 0 <= day <= 31 and 0 <= hour <= 31):
        return False
    if not (0 <= minute <= 63 and 0 <= second <= 63):
        return False
    out[0] = ((((((<uint64_t>year << 4 | <uint64_t>month) << 5 | <uint64_t>day) << 5
                | <uint64_t>hour) << 6 | <uint64_t>minute) << 6 | <uint64_t>second) << 20
              | <uint64_t>micros)
    return True


cdef inline void put_digits(char* out, uint64_t value, int width) noexcept:
    cdef int i
    for i in range(width - 1, -1, -1):
        out[i] = <char>(48 + value % 10)
        value //= 10


cdef inline void render_time(uint64_t packed, char* out) noexcept:
    """The 30 bytes that `pack_time` packed."""
    put_digits(out + 20, packed & 0xFFFFF, 6)
    packed >>= 20
    put_digits(out + 17, packed & 63, 2)
    packed >>= 6
    put_digits(out + 14, packed & 63, 2)
    packed >>= 6
    put_digits(out + 11, packed & 31, 2)
    packed >>= 5
    put_digits(out + 8, packed & 31, 2)
    packed >>= 5
    put_digits(out + 5, packed & 15, 2)
    packed >>= 4
    put_digits(out, packed, 4)
    out[4] = out[7] = 45
    out[10] = 32
    out[13] = out[16] = 58
    out[19] = 46
    memcpy(out + 26, b" UTC", 4)


cdef inline bint pack_oid(const char* text, Py_ssize_t size, uint64_t* out) noexcept:
    """The value of a decimal order id that `render_oid` writes back (no sign, no leading 0)."""
    cdef Py_ssize_t i
    cdef uint64_t value = 0
    if size < 1 or size > 19 or (size > 1 and text[0] == 48):
        return False
    for i in range(size):
        if text[i] < 48 or text[i] > 57:
            return False
        value = value * 10 + <uint64_t>(text[i] - 48)
    out[0] = value
    return True


cdef inline int render_oid(uint64_t value, char* out) noexcept:
    """The digits of ``value`` into ``out`` (20 bytes at least); their count."""
    cdef char digits[20]
    cdef int n = 0
    while True:
        digits[19 - n] = <char>(48 + value % 10)
        value //= 10
        n += 1
        if value == 0:
            break
    memcpy(out, digits + 20 - n, n)
    return n


cdef class Feed:
    """Reorders events by seq with bounded memory: the rules of feed.py, over whole batches.

    Waiting events are `Rec` records in a pool (with a free list), found by seq through an
    open-addressing index of record numbers (linear probing, deletion by backward shift, so
    that no tombstone ever lengthens a search), and ordered by a heap of their seqs.
    """

    cdef Rec* pool
    cdef Py_ssize_t pool_cap, pool_end
    cdef int64_t free_head
    cdef uint32_t* index  # record number + 1; 0 is an empty slot
    cdef Py_ssize_t capacity, used
    cdef uint64_t* heap
    cdef Py_ssize_t heap_n, heap_cap
    cdef double* arrival_time
    cdef uint64_t* arrival_seq
    cdef Py_ssize_t arr_head, arr_n, arr_cap
    cdef bint has_next
    cdef bint spent  # seq 2^64 - 1 was passed: the next seq, 2^64, is beyond every u64
    cdef uint64_t next
    cdef bint has_first
    cdef uint64_t first
    cdef public int64_t max_pending
    cdef public object gap_timeout
    cdef bint timed
    cdef double timeout
    cdef list gap_starts, gap_ends
    cdef public list skipped
    cdef public int64_t received, late, duplicate, gaps_skipped
    cdef public object seqs_lost  # up to 2^64 - 1: more than an int64
    cdef InstrumentTable table

    def __cinit__(self):
        self.capacity = 1024
        self.index = <uint32_t*>calloc(self.capacity, sizeof(uint32_t))
        if self.index == NULL:
            raise MemoryError()
        self.free_head = -1

    def __init__(self, *, start_seq=None, max_pending=100_000, gap_timeout=None,
                 InstrumentTable table=None):
        self.table = table if table is not None else InstrumentTable()
        self.has_next = self.has_first = start_seq is not None
        if start_seq is not None:
            self.next = self.first = start_seq
        self.max_pending = max_pending
        self.gap_timeout = gap_timeout
        self.timed = gap_timeout is not None
        self.timeout = gap_timeout if gap_timeout is not None else 0.0
        self.gap_starts = []
        self.gap_ends = []
        self.skipped = []
        self.received = self.late = self.duplicate = self.gaps_skipped = self.seqs_lost = 0

    def __dealloc__(self):
        cdef Py_ssize_t i
        if self.pool != NULL:
            for i in range(self.pool_end):
                if self.pool[i].flags & REC_IN_USE:
                    free(self.pool[i].strings)
            free(self.pool)
        free(self.index)
        free(self.heap)
        free(self.arrival_time)
        free(self.arrival_seq)

    @property
    def pending(self):
        """How many events are waiting."""
        return self.used

    @property
    def arrivals(self):
        """How many arrival times are logged for the gap timeout (none without a clock)."""
        return self.arr_n

    @property
    def next_seq(self):
        if not self.has_next:
            return None
        return 1 << 64 if self.spent else self.next

    @property
    def first_seq(self):
        return self.first if self.has_first else None

    # The index of waiting events: open addressing on the seq, record numbers in the slots.

    cdef inline Py_ssize_t slot_of(self, uint64_t seq) noexcept:
        """The index slot that holds ``seq``'s record, or -1."""
        cdef Py_ssize_t mask = self.capacity - 1
        cdef Py_ssize_t i = <Py_ssize_t>(mix(seq) & mask)
        cdef uint32_t k
        while True:
            k = self.index[i]
            if k == 0:
                return -1
            if self.pool[k - 1].seq == seq:
                return i
            i = (i + 1) & mask

    cdef bint waiting(self, uint64_t seq) noexcept:
        return self.used != 0 and self.slot_of(seq) >= 0

    cdef void index_add(self, uint64_t seq, uint32_t record) noexcept:
        cdef Py_ssize_t mask = self.capacity - 1
        cdef Py_ssize_t i = <Py_ssize_t>(mix(seq) & mask)
        while self.index[i]:
            i = (i + 1) & mask
        self.index[i] = record + 1

    cdef void index_remove(self, Py_ssize_t i) noexcept:
        """Empty slot ``i``, moving back the entries after it that it would hide."""
        cdef Py_ssize_t mask = self.capacity - 1, j = i, home
        while True:
            j = (j + 1) & mask
            if self.index[j] == 0:
                break
            home = <Py_ssize_t>(mix(self.pool[self.index[j] - 1].seq) & mask)
            # Move the entry at j back to i unless its home lies cyclically in (i, j].
            if (i <= j and (home <= i or home > j)) or (i > j and home <= i and home > j):
                self.index[i] = self.index[j]
                i = j
        self.index[i] = 0

    cdef void resize(self, Py_ssize_t capacity) except *:
        cdef uint32_t* old = self.index
        cdef Py_ssize_t old_capacity = self.capacity, i
        self.index = <uint32_t*>calloc(capacity, sizeof(uint32_t))
        if self.index == NULL:
            self.index = old
            raise MemoryError()
        self.capacity = capacity
        for i in range(old_capacity):
            if old[i]:
                self.index_add(self.pool[old[i] - 1].seq, old[i] - 1)
        free(old)

    # The records.

    cdef void put(self, Ev* e) except *:
        """Make event ``e`` wait (its strings are copied or packed)."""
        cdef Py_ssize_t r
        cdef Rec* rec
        cdef size_t size = 0
        if (self.used + 1) * 2 > self.capacity:
            self.resize(self.capacity * 2)
        if self.free_head >= 0:
            r = self.free_head
            self.free_head = self.pool[r].line
        else:
            if self.pool_end == self.pool_cap:
                self.pool_cap = self.pool_cap * 2 + 1024
                self.pool = <Rec*>grow(self.pool, self.pool_cap * sizeof(Rec))
            r = self.pool_end
            self.pool_end += 1
        rec = &self.pool[r]
        rec.seq = e.seq
        rec.price = e.price
        rec.qty = e.qty
        rec.line = e.line
        rec.inst = e.inst
        rec.action = e.action
        rec.side = e.side
        rec.last = e.last
        rec.flags = REC_IN_USE
        rec.strings = NULL
        rec.oid_size = rec.time_size = 0
        if pack_oid(e.oid, e.oid_size, &rec.oid):
            rec.flags |= OID_PACKED
        else:
            rec.oid_size = e.oid_size
            size += e.oid_size
        if e.time_ns >= 0:
            rec.time = <uint64_t>e.time_ns
        elif pack_time(e.time, e.time_size, &rec.time):
            rec.flags |= TIME_PACKED
        else:
            rec.flags |= TIME_TEXT
            rec.time_size = e.time_size
            size += e.time_size
        if size:
            rec.strings = <char*>malloc(size)
            if rec.strings == NULL:
                raise MemoryError()
            memcpy(rec.strings, e.oid, rec.oid_size)
            memcpy(rec.strings + rec.oid_size, e.time, rec.time_size)
        self.index_add(e.seq, <uint32_t>r)
        self.used += 1
        self.heap_push(e.seq)

    cdef void release(self, Py_ssize_t slot, EventBatch ready) except *:
        """Move the waiting event in index slot ``slot`` to ``ready`` (its strings written
        into ready's arena)."""
        cdef Py_ssize_t r = self.index[slot] - 1
        cdef Rec* rec = &self.pool[r]
        cdef Ev* e = ready.add()
        cdef char buffer[32]
        cdef int n
        e.seq = rec.seq
        e.price = rec.price
        e.qty = rec.qty
        e.line = rec.line
        e.inst = rec.inst
        e.action = rec.action
        e.side = rec.side
        e.last = rec.last
        e.raw = ""  # a waiting event is only ever released, never rejected
        e.raw_size = 0
        if rec.flags & OID_PACKED:
            n = render_oid(rec.oid, buffer)
            e.oid = arena_put(&ready.arena, buffer, n)
            e.oid_size = n
        else:
            e.oid = arena_put(&ready.arena, rec.strings, rec.oid_size)
            e.oid_size = rec.oid_size
        if rec.flags & TIME_PACKED:
            render_time(rec.time, buffer)
            e.time = arena_put(&ready.arena, buffer, 30)
            e.time_size = 30
            e.time_ns = -1
        elif rec.flags & TIME_TEXT:
            e.time = arena_put(&ready.arena, rec.strings + rec.oid_size, rec.time_size)
            e.time_size = rec.time_size
            e.time_ns = -1
        else:
            e.time = NULL
            e.time_size = 0
            e.time_ns = <int64_t>rec.time
        free(rec.strings)
        rec.strings = NULL
        rec.flags = 0
        rec.line = self.free_head
        self.free_head = r
        self.index_remove(slot)
        self.used -= 1
        if self.used == 0:  # every record is free: the pool starts again from its start
            self.free_head = -1
            self.pool_end = 0
            if self.pool_cap > 4096:  # and a start-up window's memory goes back
                free(self.pool)
                self.pool = NULL
                self.pool_cap = 0
            if self.capacity > 1024:
                self.resize(1024)

    cdef object event_of_record(self, Rec* rec):
        cdef char buffer[32]
        cdef int n
        if rec.flags & OID_PACKED:
            n = render_oid(rec.oid, buffer)
            oid = text_of(buffer, n)
        else:
            oid = text_of(rec.strings, rec.oid_size)
        if rec.flags & TIME_PACKED:
            render_time(rec.time, buffer)
            time = text_of(buffer, 30)
        elif rec.flags & TIME_TEXT:
            time = text_of(rec.strings + rec.oid_size, rec.time_size)
        else:
            time = <int64_t>rec.time
        return Event(rec.seq, rec.action, self.table.names[rec.inst], oid, rec.side, rec.price,
                     rec.qty, time, rec.line, "", rec.last != 0)

    # The heap of waiting seqs.

    cdef void heap_push(self, uint64_t seq) except *:
        cdef Py_ssize_t i, parent
        if self.heap_n == self.heap_cap:
            self.heap_cap = self.heap_cap * 2 + 1024
            self.heap = <uint64_t*>grow(self.heap, self.heap_cap * sizeof(uint64_t))
        i = self.heap_n
        self.heap_n += 1
        while i > 0:
            parent = (i - 1) >> 1
            if self.heap[parent] <= seq:
                break
            self.heap[i] = self.heap[parent]
            i = parent
        self.heap[i] = seq

    cdef uint64_t heap_pop(self) noexcept:
        cdef uint64_t top = self.heap[0], last
        cdef Py_ssize_t i = 0, child
        self.heap_n -= 1
        last = self.heap[self.heap_n]
        while True:
            child = 2 * i + 1
            if child >= self.heap_n:
                break
            if child + 1 < self.heap_n and self.heap[child + 1] < self.heap[child]:
                child += 1
            if self.heap[child] >= last:
                break
            self.heap[i] = self.heap[child]
            i = child
        if self.heap_n:
            self.heap[i] = last
        return top

    # Arrivals (time, seq) of waiting events, in order: when the current gap was first missed.

    cdef void arrive(self, double now, uint64_t seq) except *:
        cdef Py_ssize_t i
        cdef double* times
        cdef uint64_t* seqs
        if self.arr_n == self.arr_cap:
            times = <double*>malloc((self.arr_cap * 2 + 1024) * sizeof(double))
            seqs = <uint64_t*>malloc((self.arr_cap * 2 + 1024) * sizeof(uint64_t))
            if times == NULL or seqs == NULL:
                raise MemoryError()
            for i in range(self.arr_n):
                times[i] = self.arrival_time[(self.arr_head + i) % self.arr_cap]
                seqs[i] = self.arrival_seq[(self.arr_head + i) % self.arr_cap]
            free(self.arrival_time)
            free(self.arrival_seq)
            self.arrival_time, self.arrival_seq = times, seqs
            self.arr_cap = self.arr_cap * 2 + 1024
            self.arr_head = 0
        i = (self.arr_head + self.arr_n) % self.arr_cap
        self.arrival_time[i] = now
        self.arrival_seq[i] = seq
        self.arr_n += 1

    cdef void compact_arrivals(self) noexcept:
        cdef Py_ssize_t i, kept = 0, k
        if self.arr_n <= 2 * self.used + 1024:
            return
        for i in range(self.arr_n):
            k = (self.arr_head + i) % self.arr_cap
            if self.waiting(self.arrival_seq[k]):
                self.arrival_time[(self.arr_head + kept) % self.arr_cap] = self.arrival_time[k]
                self.arrival_seq[(self.arr_head + kept) % self.arr_cap] = self.arrival_seq[k]
                kept += 1
        self.arr_n = kept

    def push(self, EventBatch events, double now, EventBatch ready, list rejects):
        """Take a batch of events in arrival order; append to ``ready`` those that can go on,
        in seq order, and late and duplicate rows to ``rejects``."""
        cdef Py_ssize_t i, k
        cdef Ev* e
        cdef Ev* out
        cdef uint64_t seq
        self.table = events.table
        self.received += events.n
        ready.keep.append(events)  # events released as they come point into its strings
        for i in range(events.n):
            e = &events.ev[i]
            seq = e.seq
            if self.has_next and seq == self.next and not self.spent:
                out = ready.add()
                out[0] = e[0]
                self.step()
                self.drain(ready)
            elif self.has_next and (self.spent or seq < self.next):
                if self.was_skipped(seq):
                    self.late += 1
                    rejects.append(Reject(e.line, Reason.LATE, text_of(e.raw, e.raw_size)))
                else:
                    self.duplicate += 1
                    rejects.append(Reject(e.line, Reason.DUPLICATE, text_of(e.raw, e.raw_size)))
            elif self.waiting(seq):
                self.duplicate += 1
                rejects.append(Reject(e.line, Reason.DUPLICATE, text_of(e.raw, e.raw_size)))
            else:
                self.put(e)
                if self.timed:
                    self.arrive(now, seq)
                if self.used > self.max_pending:
                    self.skip_gap(ready)
        if self.timed:
            self.compact_arrivals()
            self.expire(now, ready)

    cdef inline void step(self) noexcept:
        """On to the next seq; past 2^64 - 1 every seq is behind (the reference's next_seq is
        then 2^64: a u64 would wrap to 0 and take seq 0 as the next one)."""
        if self.next == 0xFFFFFFFFFFFFFFFFULL:
            self.spent = True
        else:
            self.next += 1

    cdef void drain(self, EventBatch ready) except *:
        cdef Py_ssize_t k
        while not self.spent and self.heap_n and self.heap[0] == self.next:
            self.heap_pop()
            k = self.slot_of(self.next)
            self.release(k, ready)
            self.step()

    def expire(self, double now, EventBatch ready):
        """Skip every gap (or close the start-up window) whose timeout has passed by ``now``."""
        while True:
            deadline = self.deadline()
            if deadline is None or deadline > now:
                return
            self.skip_gap(ready)

    def deadline(self):
        """When the current gap times out, or None if nothing waits or there is no clock."""
        cdef Py_ssize_t k
        if not self.timed or not self.used:
            return None
        while True:
            k = self.arr_head
            if self.waiting(self.arrival_seq[k]):
                return self.arrival_time[k] + self.timeout
            self.arr_head = (self.arr_head + 1) % self.arr_cap
            self.arr_n -= 1

    def finish(self, EventBatch ready):
        """End of input: release everything, skipping the gaps."""
        while self.used:
            self.skip_gap(ready)

    cdef void skip_gap(self, EventBatch ready) except *:
        cdef uint64_t lowest = self.heap[0]
        if not self.has_next:
            self.has_next = self.has_first = True
            self.next = self.first = lowest
        elif lowest > self.next:
            self.skipped.append((self.next, lowest - 1))
            self.gaps_skipped += 1
            self.seqs_lost += lowest - self.next
            self.gap_starts.append(self.next)
            self.gap_ends.append(lowest - 1)
            if len(self.gap_starts) > GAP_MEMORY:
                del self.gap_starts[: GAP_MEMORY // 2]
                del self.gap_ends[: GAP_MEMORY // 2]
            self.next = lowest
        self.drain(ready)

    cdef bint was_skipped(self, uint64_t seq) except -1:
        cdef Py_ssize_t lo = 0, hi = len(self.gap_starts), mid
        if not self.has_first or seq < self.first:
            return True
        while lo < hi:
            mid = (lo + hi) >> 1
            if self.gap_starts[mid] <= seq:
                lo = mid + 1
            else:
                hi = mid
        return lo > 0 and seq <= self.gap_ends[lo - 1]

    def snapshot(self):
        """The feed as plain data, waiting events included (in seq order, without raw lines)."""
        cdef Py_ssize_t i
        waiting = []
        for i in range(self.pool_end):
            if self.pool[i].flags & REC_IN_USE:
                waiting.append(self.event_of_record(&self.pool[i]))
        waiting.sort(key=lambda e: e.seq)
        return FeedState(
            next_seq=self.next_seq, first_seq=self.first_seq,
            gaps=list(zip(self.gap_starts, self.gap_ends)), pending=waiting,
            received=self.received, late=self.late, duplicate=self.duplicate,
            gaps_skipped=self.gaps_skipped, seqs_lost=self.seqs_lost,
        )

    def restore(self, state, double now):
        """Load a `snapshot`; waiting events count as having arrived at ``now``."""
        cdef EventBatch batch = EventBatch(self.table)
        cdef Py_ssize_t i
        self.has_next = state.next_seq is not None
        self.has_first = state.first_seq is not None
        self.spent = state.next_seq == 1 << 64
        if self.has_next:
            self.next = 0xFFFFFFFFFFFFFFFFULL if self.spent else state.next_seq
        if self.has_first:
            self.first = state.first_seq
        batch.extend(state.pending)
        for i in range(batch.n):
            self.put(&batch.ev[i])
            if self.timed:
                self.arrive(now, batch.ev[i].seq)
        self.gap_starts = [first for first, _ in state.gaps]
        self.gap_ends = [last for _, last in state.gaps]
        self.received = state.received
        self.late = state.late
        self.duplicate = state.duplicate
        self.gaps_skipped = state.gaps_skipped
        self.seqs_lost = state.seqs_lost


# -- the books (SPEC §1-3, §9, §12) ----------------------------------------------------------------

cdef struct Order:
    uint64_t hash  # 0 empty, 1 removed
    int64_t price
    int64_t qty
    char* key_heap  # the order id, when it does not fit `key`
    int32_t inst
    int32_t key_size
    uint8_t side
    char key[23]


cdef struct Level:
    uint64_t hash
    int64_t price
    int64_t qty
    int32_t inst
    uint8_t side


cdef struct Side_:
    int64_t* heap  # `heap_key`s of level prices, best first; stale entries below the top
    Py_ssize_t n
    Py_ssize_t capacity
    Py_ssize_t levels


cdef struct Book:
    Side_ sides[2]
    int64_t last_bid
    int64_t last_ask
    int64_t last_bid_size
    int64_t last_ask_size
    int64_t orders
    uint8_t has_last
    uint8_t dirty
    uint8_t decided  # whether to keep it was decided
    uint8_t kept


cdef inline int64_t heap_key(uint8_t side, int64_t price) noexcept nogil:
    """A level price as its side's heap holds it: both heaps are min-heaps, best first, so bids
    are held in reverse order. Bitwise NOT reverses the order of every int64 and is its own
    inverse (the key of a key is the price); a negation would overflow on -2^63, which a
    Databento price may be (issue 17)."""
    return ~price if side == 0 else price


cdef inline const char* order_key(Order* o) noexcept:
    return o.key_heap if o.key_heap != NULL else o.key


cdef inline uint64_t order_hash(int32_t inst, uint8_t side, const char* oid, int32_t size) noexcept nogil:
    return hash_bytes(oid, size, (<uint64_t>inst << 1 | side) * 0x9E3779B97F4A7C15ULL + 11)


cdef inline uint64_t level_hash(int32_t inst, uint8_t side, int64_t price) noexcept nogil:
    return mix((<uint64_t>price) ^ ((<uint64_t>inst << 1 | side) * 0xD6E8FEB86659FD93ULL)) | 2


cdef class Instruments:
    """The books of every instrument seen, and the counters of applying events to them."""

    cdef Order* orders
    cdef Py_ssize_t order_cap, order_used, order_removed
    cdef Level* levels
    cdef Py_ssize_t level_cap, level_used, level_removed
    cdef Book* books
    cdef Py_ssize_t book_cap
    cdef InstrumentTable table
    cdef public object keep
    cdef public object kept
    cdef int64_t anomaly_counts[7]
    cdef public int64_t applied, skipped, crossed, locked
    cdef public object last_seq
    cdef Py_ssize_t book_count

    def __cinit__(self):
        self.order_cap = 1024
        self.orders = <Order*>calloc(self.order_cap, sizeof(Order))
        self.level_cap = 1024
        self.levels = <Level*>calloc(self.level_cap, sizeof(Level))
        if self.orders == NULL or self.levels == NULL:
            raise MemoryError()

    def __init__(self, keep=None, *, kept=None, InstrumentTable table=None):
        self.table = table if table is not None else InstrumentTable()
        self.keep = None if keep is None else frozenset(keep)
        self.kept = kept if kept is not None else frozenset()
        self.applied = self.skipped = self.crossed = self.locked = 0
        self.last_seq = None

    def __dealloc__(self):
        cdef Py_ssize_t i, s
        if self.orders != NULL:
            for i in range(self.order_cap):
                if self.orders[i].hash > 1:
                    free(self.orders[i].key_heap)
            free(self.orders)
        free(self.levels)
        if self.books != NULL:
            for i in range(self.book_cap):
                for s in range(2):
                    free(self.books[i].sides[s].heap)
            free(self.books)

    @property
    def anomalies(self):
        return {_ANOMALIES[k]: int(self.anomaly_counts[k]) for k in range(7) if self.anomaly_counts[k]}

    def __len__(self):
        return self.book_count

    def names(self):
        """The instruments that have a book: kept, and met in an applied event."""
        cdef Py_ssize_t i
        return frozenset(
            self.table.names[i] for i in range(self.book_cap)
            if self.books[i].decided and self.books[i].kept
        )

    # Books: one per instrument index, created (and the keep decided) when first met.

    cdef Book* book_at(self, int32_t inst) except NULL:
        cdef Py_ssize_t old = self.book_cap
        cdef Book* b
        if inst >= self.book_cap:
            self.book_cap = max(inst + 1, self.book_cap * 2 + 16)
            self.books = <Book*>grow(self.books, self.book_cap * sizeof(Book))
            memset(self.books + old, 0, (self.book_cap - old) * sizeof(Book))
        b = &self.books[inst]
        if not b.decided:
            b.decided = 1
            name = self.table.names[inst]
            b.kept = self.keep is None or name in self.keep or name in self.kept
            b.dirty = 1
            if b.kept:
                self.book_count += 1
        return b

    # Orders: (instrument, side, order id) -> (price, qty).

    cdef Order* find_order(self, int32_t inst, uint8_t side, const char* oid, int32_t size, uint64_t h) noexcept:
        cdef Py_ssize_t mask = self.order_cap - 1
        cdef Py_ssize_t i = <Py_ssize_t>(h & mask)
        cdef Order* o
        while True:
            o = &self.orders[i]
            if o.hash == 0:
                return NULL
            if (o.hash == h and o.inst == inst and o.side == side and o.key_size == size
                    and memcmp(order_key(o), oid, size) == 0):
                return o
            i = (i + 1) & mask

    cdef Order* new_order(self, int32_t inst, uint8_t side, const char* oid, int32_t size, uint64_t h) except NULL:
        cdef Py_ssize_t mask, i
        cdef Order* o
        if (self.order_used + self.order_removed + 1) * 10 > self.order_cap * 7:
            self.rehash_orders()
        mask = self.order_cap - 1
        i = <Py_ssize_t>(h & mask)
        while self.orders[i].hash > 1:
            i = (i + 1) & mask
        o = &self.orders[i]
        if o.hash == 1:
            self.order_removed -= 1
        o.hash = h
        o.inst = inst
        o.side = side
        o.key_size = size
        if size <= 23:
            o.key_heap = NULL
            memcpy(o.key, oid, size)
        else:
            o.key_heap = <char*>malloc(size)
            if o.key_heap == NULL:
                raise MemoryError()
            memcpy(o.key_heap, oid, size)
        self.order_used += 1
        return o

    cdef void drop_order(self, Order* o) noexcept:
        free(o.key_heap)
        o.key_heap = NULL
        o.hash = 1
        self.order_used -= 1
        self.order_removed += 1

    cdef void rehash_orders(self) except *:
        cdef Order* old = self.orders
        cdef Py_ssize_t old_cap = self.order_cap, i, j, mask
        while (self.order_used + 1) * 4 > self.order_cap:
            self.order_cap *= 2
        self.orders = <Order*>calloc(self.order_cap, sizeof(Order))
        if self.orders == NULL:
            raise MemoryError()
        mask = self.order_cap - 1
        for i in range(old_cap):
            if old[i].hash > 1:
                j = <Py_ssize_t>(old[i].hash & mask)
                while self.orders[j].hash:
                    j = (j + 1) & mask
                self.orders[j] = old[i]
        self.order_removed = 0
        free(old)

    # Levels: (instrument, side, price) -> summed qty.

    cdef Level* find_level(self, int32_t inst, uint8_t side, int64_t price) noexcept:
        cdef uint64_t h = level_hash(inst, side, price)
        cdef Py_ssize_t mask = self.level_cap - 1
        cdef Py_ssize_t i = <Py_ssize_t>(h & mask)
        cdef Level* l
        while True:
            l = &self.levels[i]
            if l.hash == 0:
                return NULL
            if l.hash == h and l.price == price and l.inst == inst and l.side == side:
                return l
            i = (i + 1) & mask

    cdef Level* new_level(self, int32_t inst, uint8_t side, int64_t price) except NULL:
        cdef uint64_t h
        cdef Py_ssize_t mask, i
        cdef Level* l
        if (self.level_used + self.level_removed + 1) * 10 > self.level_cap * 7:
            self.rehash_levels()
        h = level_hash(inst, side, price)
        mask = self.level_cap - 1
        i = <Py_ssize_t>(h & mask)
        while self.levels[i].hash > 1:
            i = (i + 1) & mask
        l = &self.levels[i]
        if l.hash == 1:
            self.level_removed -= 1
        l.hash = h
        l.inst = inst
        l.side = side
        l.price = price
        l.qty = 0
        self.level_used += 1
        return l

    cdef void rehash_levels(self) except *:
        cdef Level* old = self.levels
        cdef Py_ssize_t old_cap = self.level_cap, i, j, mask
        while (self.level_used + 1) * 4 > self.level_cap:
            self.level_cap *= 2
        self.levels = <Level*>calloc(self.level_cap, sizeof(Level))
        if self.levels == NULL:
            raise MemoryError()
        mask = self.level_cap - 1
        for i in range(old_cap):
            if old[i].hash > 1:
                j = <Py_ssize_t>(old[i].hash & mask)
                while self.levels[j].hash:
                    j = (j + 1) & mask
                self.levels[j] = old[i]
        self.level_removed = 0
        free(old)

    # Heaps of level prices (as `heap_key`s), with lazy deletion.

    cdef void heap_push(self, Side_* s, int64_t key) except *:
        cdef Py_ssize_t i, parent
        if s.n == s.capacity:
            s.capacity = s.capacity * 2 + 16
            s.heap = <int64_t*>grow(s.heap, s.capacity * sizeof(int64_t))
        i = s.n
        s.n += 1
        while i > 0:
            parent = (i - 1) >> 1
            if s.heap[parent] <= key:
                break
            s.heap[i] = s.heap[parent]
            i = parent
        s.heap[i] = key

    cdef void heap_pop(self, Side_* s) noexcept:
        cdef int64_t last
        cdef Py_ssize_t i = 0, child
        s.n -= 1
        if s.n == 0:
            return
        last = s.heap[s.n]
        while True:
            child = 2 * i + 1
            if child >= s.n:
                break
            if child + 1 < s.n and s.heap[child + 1] < s.heap[child]:
                child += 1
            if s.heap[child] >= last:
                break
            s.heap[i] = s.heap[child]
            i = child
        s.heap[i] = last

    cdef void rebuild_heap(self, Side_* s, int32_t inst, uint8_t side) except *:
        """Keep only the live level prices, once each, as a heap again."""
        cdef Py_ssize_t i
        cdef int64_t* old = s.heap
        cdef Level* l
        cdef Py_ssize_t n = s.n
        s.heap = NULL
        s.n = s.capacity = 0
        for i in range(n):
            l = self.find_level(inst, side, heap_key(side, old[i]))
            if l != NULL and l.qty > 0:
                l.qty = -l.qty  # mark: pushed once
                self.heap_push(s, old[i])
        for i in range(s.n):
            l = self.find_level(inst, side, heap_key(side, s.heap[i]))
            l.qty = -l.qty
        free(old)

    cdef void clear_book(self, int32_t inst, Book* b) noexcept:
        cdef Py_ssize_t i
        for i in range(self.order_cap):
            if self.orders[i].hash > 1 and self.orders[i].inst == inst:
                self.drop_order(&self.orders[i])
        for i in range(self.level_cap):
            if self.levels[i].hash > 1 and self.levels[i].inst == inst:
                self.levels[i].hash = 1
                self.level_used -= 1
                self.level_removed += 1
        for i in range(2):
            b.sides[i].n = 0
            b.sides[i].levels = 0
        b.orders = 0

    cdef inline void note(self, int kind, Ev* e, list anomalies) except *:
        self.anomaly_counts[kind] += 1
        anomalies.append((_ANOMALIES[kind], event_of(e, self.table)))

    def apply(self, EventBatch events, QuoteBatch quotes, list anomalies):
        """Apply events in order; append the quotes they write and the anomalies they show."""
        cdef Py_ssize_t i
        cdef Ev* e
        cdef Book* b
        cdef Side_* s
        cdef Order* o
        cdef Level* l
        cdef uint64_t h
        cdef int64_t take, put, old_price = 0, old_qty, key, bid, ask, bid_size, ask_size
        cdef int64_t skipped = 0
        cdef int32_t inst
        cdef uint8_t side, action
        cdef Qt* q
        if events.n == 0:
            return
        quotes.keep.append(events)
        for i in range(events.n):
            e = &events.ev[i]
            inst = e.inst
            b = self.book_at(inst)
            if not b.kept:
                skipped += 1
                continue
            action = e.action
            if action == CLEAR:
                self.clear_book(inst, b)
                b.dirty = 1
            elif action <= CANCEL:
                side = e.side
                s = &b.sides[side]
                h = order_hash(inst, side, e.oid, e.oid_size)
                o = self.find_order(inst, side, e.oid, e.oid_size, h)
                take = put = 0
                if action <= UPDATE:
                    if o != NULL:
                        old_price = o.price
                        take = o.qty
                        if action == ADD:
                            self.note(A_ADD_LIVE, e, anomalies)
                    elif action == UPDATE:
                        self.note(A_UPDATE_UNKNOWN, e, anomalies)
                    if e.qty > 0:
                        if o == NULL:
                            o = self.new_order(inst, side, e.oid, e.oid_size, h)
                            b.orders += 1
                        o.price = e.price
                        o.qty = e.qty
                        put = e.qty
                    elif o != NULL:
                        self.drop_order(o)
                        b.orders -= 1
                elif action == DELETE:
                    if o == NULL:
                        self.note(A_DELETE_UNKNOWN, e, anomalies)
                    else:
                        old_price = o.price
                        take = o.qty
                        self.drop_order(o)
                        b.orders -= 1
                else:  # TRADE or CANCEL
                    if o == NULL:
                        self.note(A_TRADE_UNKNOWN if action == TRADE else A_CANCEL_UNKNOWN, e, anomalies)
                    else:
                        old_price = o.price
                        old_qty = o.qty
                        if e.qty >= old_qty:
                            if e.qty > old_qty:
                                self.note(A_TRADE_EXCEEDS if action == TRADE else A_CANCEL_EXCEEDS, e, anomalies)
                            self.drop_order(o)
                            b.orders -= 1
                            take = old_qty
                        elif e.qty > 0:
                            o.qty = old_qty - e.qty
                            take = e.qty
                if take:
                    key = heap_key(side, old_price)
                    l = self.find_level(inst, side, old_price)
                    l.qty -= take
                    if l.qty > 0:
                        if s.heap[0] == key:
                            b.dirty = 1
                    else:
                        l.hash = 1
                        self.level_used -= 1
                        self.level_removed += 1
                        s.levels -= 1
                        if s.heap[0] == key:
                            b.dirty = 1
                            self.heap_pop(s)
                            while s.n and self.find_level(inst, side, heap_key(side, s.heap[0])) == NULL:
                                self.heap_pop(s)
                if put:
                    key = heap_key(side, e.price)
                    l = self.find_level(inst, side, e.price)
                    if l == NULL:
                        l = self.new_level(inst, side, e.price)
                        l.qty = put
                        s.levels += 1
                        self.heap_push(s, key)
                        if s.n > 2 * s.levels + COMPACT_SLACK:
                            self.rebuild_heap(s, inst, side)  # the new level is live already
                    else:
                        l.qty += put
                    if s.heap[0] == key:
                        b.dirty = 1
            if e.last and b.dirty:
                b.dirty = 0
                if b.sides[0].n and b.sides[1].n:
                    bid = heap_key(0, b.sides[0].heap[0])
                    ask = b.sides[1].heap[0]
                    bid_size = self.find_level(inst, 0, bid).qty
                    ask_size = self.find_level(inst, 1, ask).qty
                    if (not b.has_last or bid != b.last_bid or ask != b.last_ask
                            or bid_size != b.last_bid_size or ask_size != b.last_ask_size):
                        b.has_last = 1
                        b.last_bid, b.last_ask = bid, ask
                        b.last_bid_size, b.last_ask_size = bid_size, ask_size
                        q = quotes.add()
                        q.bid, q.ask, q.bid_size, q.ask_size = bid, ask, bid_size, ask_size
                        q.time_ns = e.time_ns
                        q.time = e.time
                        q.time_size = e.time_size
                        q.seq = e.seq
                        q.inst = inst
                        if bid > ask:
                            self.crossed += 1
                        elif bid == ask:
                            self.locked += 1
        self.applied += events.n - skipped
        self.skipped += skipped
        self.last_seq = events.ev[events.n - 1].seq

    # -- queries, for tests and the checkpoint ---------------------------------------------------

    def book(self, str name=""):
        """One instrument's book, as the Python core's `OrderBook` (a copy)."""
        cdef int32_t inst = self.table.index(name)
        return OrderBook.from_orders(self.orders_of(inst))

    def heap_sizes(self, str name=""):
        """The lengths of an instrument's two heaps (stale entries included): (bids, asks)."""
        cdef int32_t inst = self.table.index(name)
        if inst >= self.book_cap:
            return (0, 0)
        return (self.books[inst].sides[0].n, self.books[inst].sides[1].n)

    def last_quote(self, str name=""):
        """The last quote written for an instrument: (bid, ask, bid size, ask size), or None."""
        cdef int32_t inst = self.table.index(name)
        if inst >= self.book_cap or not self.books[inst].has_last:
            return None
        b = &self.books[inst]
        return (b.last_bid, b.last_ask, b.last_bid_size, b.last_ask_size)

    cdef list orders_of(self, int32_t inst):
        cdef Py_ssize_t i
        cdef Order* o
        out = []
        for i in range(self.order_cap):
            o = &self.orders[i]
            if o.hash > 1 and o.inst == inst:
                out.append((o.side, text_of(order_key(o), o.key_size), o.price, o.qty))
        out.sort(key=lambda order: order[0])
        return out

    def snapshot(self):
        """Every book, last quote and counter as plain data."""
        cdef Py_ssize_t i
        cdef Order* o
        by_inst = {}
        for i in range(self.order_cap):
            o = &self.orders[i]
            if o.hash > 1:
                by_inst.setdefault(o.inst, []).append(
                    (o.side, text_of(order_key(o), o.key_size), o.price, o.qty)
                )
        states = []
        for i in range(self.book_cap):
            b = &self.books[i]
            if b.decided and b.kept:
                last = (b.last_bid, b.last_ask, b.last_bid_size, b.last_ask_size) if b.has_last else None
                states.append(InstrumentState(self.table.names[i], by_inst.get(i, []), last))
        return InstrumentsState(
            instruments=states, anomalies=self.anomalies, applied=self.applied,
            skipped=self.skipped, crossed=self.crossed, locked=self.locked,
            last_seq=self.last_seq,
        )

    def restore(self, state):
        """Load a `snapshot`."""
        cdef int32_t inst
        cdef Book* b
        cdef Order* o
        cdef Level* l
        for instrument in state.instruments:
            inst = self.table.index(instrument.name)
            b = self.book_at(inst)
            if instrument.last is not None:
                b.has_last = 1
                b.last_bid, b.last_ask, b.last_bid_size, b.last_ask_size = instrument.last
            for side, order_id, price, qty in instrument.orders:
                oid = order_id.encode()
                h = order_hash(inst, side, oid, len(oid))
                o = self.new_order(inst, side, oid, len(oid), h)
                o.price, o.qty = price, qty
                b.orders += 1
                l = self.find_level(inst, side, price)
                if l == NULL:
                    l = self.new_level(inst, side, price)
                    b.sides[side].levels += 1
                    self.heap_push(&b.sides[side], heap_key(side, price))
                l.qty += qty
        for kind, count in state.anomalies.items():
            self.anomaly_counts[_ANOMALIES.index(kind)] = count
        self.applied = state.applied
        self.skipped = state.skipped
        self.crossed = state.crossed
        self.locked = state.locked
        self.last_seq = state.last_seq


# -- L1 text (SPEC §2) -----------------------------------------------------------------------------

cdef struct PriceText:
    int64_t price
    uint8_t used
    uint8_t size
    char text[30]


cdef inline int civil(int64_t days, int* year, int* month, int* day) noexcept nogil:
    # Howard Hinnant's days-to-civil: days since 1970-01-01 to a proleptic Gregorian date.
    cdef int64_t z = days + 719468
    cdef int64_t era = (z if z >= 0 else z - 146096) // 146097
    cdef int64_t doe = z - era * 146097
    cdef int64_t yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    cdef int64_t y = yoe + era * 400
    cdef int64_t doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    cdef int64_t mp = (5 * doy + 2) // 153
    day[0] = <int>(doy - (153 * mp + 2) // 5 + 1)
    month[0] = <int>(mp + 3 if mp < 10 else mp - 9)
    year[0] = <int>(y + (1 if month[0] <= 2 else 0))
    return 0


cdef inline void put2(char* out, int value) noexcept nogil:
    out[0] = <char>(48 + value // 10)
    out[1] = <char>(48 + value % 10)


cdef class L1Formatter:
    """Formats quotes to CSV lines, remembering each price's text."""

    cdef PriceText* prices
    cdef Py_ssize_t price_cap
    cdef char* out
    cdef Py_ssize_t out_cap
    cdef public bint with_instrument
    cdef int64_t second  # the second whose "YYYY-MM-DD HH:MM:SS" is in `stamp`
    cdef char stamp[19]

    def __cinit__(self):
        self.price_cap = 1 << 14
        self.prices = <PriceText*>calloc(self.price_cap, sizeof(PriceText))
        if self.prices == NULL:
            raise MemoryError()
        self.second = -1

    def __init__(self, *, with_instrument=False):
        self.with_instrument = with_instrument

    def __dealloc__(self):
        free(self.prices)
        free(self.out)

    cdef PriceText* price_text(self, int64_t price) except NULL:
        cdef Py_ssize_t mask = self.price_cap - 1
        cdef Py_ssize_t i = <Py_ssize_t>(mix(<uint64_t>price) & mask), probes = 0
        cdef PriceText* t
        while True:
            t = &self.prices[i]
            if not t.used or probes > 16:
                break
            if t.price == price:
                return t
            i = (i + 1) & mask
            probes += 1
        text = format_price(price).encode()  # the reference's formatting, once per price
        t.used = 1
        t.price = price
        t.size = <uint8_t>len(text)
        memcpy(t.text, <const char*>text, t.size)
        return t

    def format(self, QuoteBatch quotes):
        """The CSV lines of ``quotes``, each ending in LF."""
        cdef Py_ssize_t i, n = 0, need
        cdef Qt* q
        cdef PriceText* t
        cdef char* w
        cdef bytes name
        cdef list fields = quotes.table.fields
        cdef int64_t second, fraction
        cdef int year, month, day, k
        cdef Py_ssize_t size
        for i in range(quotes.n):
            q = &quotes.q[i]
            name = fields[q.inst] if self.with_instrument else b""
            need = n + 200 + PyBytes_GET_SIZE(name)
            if need > self.out_cap:
                self.out_cap = need * 2 + 65536
                self.out = <char*>grow(self.out, self.out_cap)
            w = self.out + n
            if q.time_ns >= 0:
                second = q.time_ns // 1000000000
                fraction = q.time_ns % 1000000000
                if second != self.second:
                    self.second = second
                    civil(second // 86400, &year, &month, &day)
                    k = <int>(second % 86400)
                    put2(self.stamp, year // 100)
                    put2(self.stamp + 2, year % 100)
                    self.stamp[4] = 45
                    put2(self.stamp + 5, month)
                    self.stamp[7] = 45
                    put2(self.stamp + 8, day)
                    self.stamp[10] = 32
                    put2(self.stamp + 11, k // 3600)
                    self.stamp[13] = 58
                    put2(self.stamp + 14, k // 60 % 60)
                    self.stamp[16] = 58
                    put2(self.stamp + 17, k % 60)
                memcpy(w, self.stamp, 19)
                w[19] = 46
                for k in range(9):
                    w[28 - k] = <char>(48 + fraction % 10)
                    fraction //= 10
                memcpy(w + 29, b" UTC", 4)
                w += 33
            elif q.time_size == 30:
                memcpy(w, q.time, 30)
                w += 30
            else:
                memcpy(w, q.time, 19)
                w[19] = 46
                size = q.time_size - 24 if q.time_size > 23 else 0  # fraction digits
                memcpy(w + 20, q.time + 20, size)
                memset(w + 20 + size, 48, 6 - size)
                memcpy(w + 26, b" UTC", 4)
                w += 30
            w[0] = 44
            w += 1
            if self.with_instrument:
                memcpy(w, PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name))
                w += PyBytes_GET_SIZE(name)
                w[0] = 44
                w += 1
            t = self.price_text(q.bid)
            memcpy(w, t.text, t.size)
            w += t.size
            w[0] = 44
            w += 1
            t = self.price_text(q.ask)
            memcpy(w, t.text, t.size)
            w += t.size
            w[0] = 44
            w += 1
            w += write_u64(w, <uint64_t>q.bid_size)
            w[0] = 44
            w += 1
            w += write_u64(w, <uint64_t>q.ask_size)
            w[0] = 44
            w += 1
            w += write_u64(w, q.seq)
            w[0] = 10
            w += 1
            n = w - self.out
        return PyUnicode_DecodeUTF8(self.out, n, NULL)


# -- message bodies (the wire format of core/wire.py, from and into the C arrays) ------------------

cdef packed struct WireEv:
    uint64_t seq
    int64_t price
    int64_t qty
    int64_t line
    int64_t time_ns
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


cdef inline int64_t time_field(int64_t time_ns, const char* time, int32_t size) noexcept:
    """The wire's time field (core/wire.py): ns, -1 (the text follows), or a packed time."""
    cdef uint64_t packed
    if time_ns >= 0:
        return time_ns
    if pack_time(time, size, &packed):
        return -2 - <int64_t>packed
    return -1


cdef inline Py_ssize_t event_size(Ev* e, InstrumentTable table) noexcept:
    return (sizeof(WireEv) + table.size_at[e.inst] + e.oid_size
            + (e.time_size if time_field(e.time_ns, e.time, e.time_size) == -1 else 0))


cdef inline bint time_ok(int64_t field, uint32_t text_size) noexcept:
    if text_size:
        return field == -1
    return field != -1 and field > -2 - (<int64_t>1 << 60)


cdef inline const char* time_text(int64_t field, const char* text, Arena* arena) except NULL:
    """Where the time text of a wire time field is: after the record, or rendered."""
    cdef char rendered[30]
    if field >= -1:
        return text
    render_time(<uint64_t>(-2 - field), rendered)
    return arena_put(arena, rendered, 30)


cdef inline char* put_event(char* out, Ev* e, InstrumentTable table) noexcept:
    cdef WireEv w
    w.seq = e.seq
    w.price = e.price
    w.qty = e.qty
    w.line = e.line
    w.time_ns = time_field(e.time_ns, e.time, e.time_size)
    w.action = e.action
    w.side = e.side
    w.last = e.last
    w.pad = 0
    w.inst_size = <uint32_t>table.size_at[e.inst]
    w.oid_size = <uint32_t>e.oid_size
    w.time_size = <uint32_t>e.time_size if w.time_ns == -1 else 0
    memcpy(out, &w, sizeof(WireEv))
    out += sizeof(WireEv)
    memcpy(out, table.text_at[e.inst], w.inst_size)
    out += w.inst_size
    memcpy(out, e.oid, w.oid_size)
    out += w.oid_size
    memcpy(out, e.time, w.time_size)
    return out + w.time_size


cdef inline uint64_t place_of(Ev* e, bint by_line) noexcept:
    return <uint64_t>e.line if by_line else e.seq


def pack_events(EventBatch events, int partitions, last_seq, Py_ssize_t max_body, *,
                bint by_line=False):
    """As `core.wire.pack_events`, from the C array: no Python object per event."""
    cdef Py_ssize_t n = events.n, i, j, last, size, record, count, c
    cdef InstrumentTable table = events.table
    cdef Py_ssize_t* nxt = NULL
    cdef Py_ssize_t* head = NULL
    cdef Py_ssize_t* tail = NULL
    cdef uint64_t* lastv = NULL
    cdef uint8_t* has = NULL
    cdef int p
    cdef Ev* e
    cdef char* out
    cdef list packed = []
    cdef Py_ssize_t skipped = 0
    if n == 0:
        return packed, 0
    try:
        nxt = <Py_ssize_t*>grow(NULL, n * sizeof(Py_ssize_t))
        head = <Py_ssize_t*>grow(NULL, partitions * sizeof(Py_ssize_t))
        tail = <Py_ssize_t*>grow(NULL, partitions * sizeof(Py_ssize_t))
        lastv = <uint64_t*>grow(NULL, partitions * sizeof(uint64_t))
        has = <uint8_t*>grow(NULL, partitions)
        for p in range(partitions):
            head[p] = tail[p] = -1
            # A place is a u64: a last place above every u64 leaves out every event, as the
            # reference's comparison of Python ints does (no overflow on a header's value).
            value = min(last_seq[p], 0xFFFFFFFFFFFFFFFF)
            has[p] = value >= 0
            lastv[p] = value if value >= 0 else 0
        for i in range(n):
            e = &events.ev[i]
            p = <int>(table.crc_at[e.inst] % <uint32_t>partitions)
            if has[p] and place_of(e, by_line) <= lastv[p]:
                skipped += 1
                continue
            nxt[i] = -1
            if tail[p] < 0:
                head[p] = i
            else:
                nxt[tail[p]] = i
            tail[p] = i
        for p in range(partitions):
            i = head[p]
            while i >= 0:
                size, count, j, last = 4, 0, i, i
                while j >= 0:
                    record = event_size(&events.ev[j], table)
                    if count > 0 and size + record > max_body:
                        break
                    size += record
                    count += 1
                    last = j
                    j = nxt[j]
                body = PyBytes_FromStringAndSize(NULL, size)
                out = PyBytes_AS_STRING(body)
                memcpy(out, b"L3E1", 4)
                out += 4
                j = i
                for c in range(count):
                    out = put_event(out, &events.ev[j], table)
                    j = nxt[j]
                packed.append((p, body, place_of(&events.ev[i], by_line),
                               place_of(&events.ev[last], by_line), count))
                i = j
    finally:
        free(nxt)
        free(head)
        free(tail)
        free(lastv)
        free(has)
    return packed, skipped


def instrument_days(EventBatch events):
    """As `core.wire.instrument_days`."""
    cdef set pairs = set()
    cdef Py_ssize_t i
    cdef Ev* e
    cdef int32_t inst = -1
    cdef int64_t day = -1
    for i in range(events.n):
        e = &events.ev[i]
        if e.time_ns >= 0 and (e.inst != inst or e.time_ns // NS_PER_DAY != day):
            inst, day = e.inst, e.time_ns // NS_PER_DAY
            pairs.add((events.table.names[inst], day))
    return pairs


cdef struct NameCache:
    const char* name  # the last instrument name met in a body, and its index
    uint32_t size
    int32_t inst


cdef inline int32_t intern_cached(InstrumentTable table, NameCache* cache, const char* name,
                                  uint32_t size) except -1:
    """The index of a name in a body: asked of the table only when it changes (a body's records
    mostly repeat the one before)."""
    if cache.name == NULL or cache.size != size or memcmp(cache.name, name, size) != 0:
        cache.name = name
        cache.size = size
        cache.inst = table.intern(name, size)
    return cache.inst


cdef inline void check_text(const char* text, Py_ssize_t size) except *:
    """Refuse a string of a body that is not UTF-8, as the reference does when it decodes it
    (ASCII, the common case, is checked here; anything else by Python's decoder).

    :raises UnicodeDecodeError: (a ValueError) it is not.
    """
    cdef Py_ssize_t i
    for i in range(size):
        if <uint8_t>text[i] >= 128:
            PyUnicode_DecodeUTF8(text, size, NULL)
            return


cdef inline void check_mark(bytes body, const char* mark, str kind) except *:
    if PyBytes_GET_SIZE(body) < 4 or memcmp(PyBytes_AS_STRING(body), mark, 4) != 0:
        raise ValueError(f"not a batch of {kind}s (no {mark.decode()} mark)")


def unpack_events(InstrumentTable table, bytes body):
    """As `core.wire.unpack_events`, into an `EventBatch` whose strings point into ``body``.

    :raises ValueError: the body is not a batch of events (a malformed message).
    """
    cdef EventBatch batch = EventBatch(table)
    cdef const char* base = PyBytes_AS_STRING(body)
    cdef Py_ssize_t at = 4, end = PyBytes_GET_SIZE(body)
    cdef NameCache names
    cdef int32_t inst
    cdef WireEv w
    cdef Ev* e
    check_mark(body, b"L3E1", "event")
    names.name, names.size, names.inst = NULL, 0, 0
    batch.keep.append(body)
    while at < end:
        if end - at < <Py_ssize_t>sizeof(WireEv):
            raise ValueError(f"event {batch.n} is cut short")
        memcpy(&w, base + at, sizeof(WireEv))
        at += sizeof(WireEv)
        if <uint64_t>w.inst_size + w.oid_size + w.time_size > <uint64_t>(end - at):
            raise ValueError(f"event {batch.n} is cut short")
        if w.action > 6 or w.side > 1 or w.last > 1 or not time_ok(w.time_ns, w.time_size):
            raise ValueError(f"event {batch.n} has a field out of range")
        inst = intern_cached(table, &names, base + at, w.inst_size)
        at += w.inst_size
        e = batch.add()
        e.seq = w.seq
        e.price = w.price
        e.qty = w.qty
        e.line = w.line
        e.time_ns = w.time_ns if w.time_ns >= 0 else -1
        e.action = w.action
        e.side = w.side
        e.last = w.last
        e.inst = inst
        e.oid = base + at
        e.oid_size = <int32_t>w.oid_size
        check_text(e.oid, e.oid_size)
        check_text(base + at + w.oid_size, w.time_size)
        at += w.oid_size
        e.time = time_text(w.time_ns, base + at, &batch.arena)
        e.time_size = <int32_t>w.time_size if w.time_ns >= -1 else 30
        at += w.time_size
        e.raw = b""
        e.raw_size = 0
    return batch


cdef inline Py_ssize_t quote_size(Qt* q, InstrumentTable table) noexcept:
    return (sizeof(WireQt) + table.size_at[q.inst]
            + (q.time_size if time_field(q.time_ns, q.time, q.time_size) == -1 else 0))


def pack_quotes(QuoteBatch quotes, Py_ssize_t max_body):
    """As `core.wire.pack_quotes`, from the C array."""
    cdef InstrumentTable table = quotes.table
    cdef Py_ssize_t i = 0, j, size, record
    cdef list bodies = []
    cdef Qt* q
    cdef WireQt w
    cdef char* out
    while i < quotes.n:
        size, j = 4, i
        while j < quotes.n:
            record = quote_size(&quotes.q[j], table)
            if j > i and size + record > max_body:
                break
            size += record
            j += 1
        body = PyBytes_FromStringAndSize(NULL, size)
        out = PyBytes_AS_STRING(body)
        memcpy(out, b"L1Q1", 4)
        out += 4
        for i in range(i, j):
            q = &quotes.q[i]
            w.bid = q.bid
            w.ask = q.ask
            w.bid_size = q.bid_size
            w.ask_size = q.ask_size
            w.time_ns = time_field(q.time_ns, q.time, q.time_size)
            w.seq = q.seq
            w.inst_size = <uint32_t>table.size_at[q.inst]
            w.time_size = <uint32_t>q.time_size if w.time_ns == -1 else 0
            memcpy(out, &w, sizeof(WireQt))
            out += sizeof(WireQt)
            memcpy(out, table.text_at[q.inst], w.inst_size)
            out += w.inst_size
            memcpy(out, q.time, w.time_size)
            out += w.time_size
        bodies.append(body)
        i = j
    return bodies


def unpack_quotes(InstrumentTable table, bytes body):
    """As `core.wire.unpack_quotes`, into a `QuoteBatch` whose times point into ``body``.

    :raises ValueError: the body is not a batch of quotes (a malformed message).
    """
    cdef QuoteBatch quotes = QuoteBatch(table)
    cdef const char* base = PyBytes_AS_STRING(body)
    cdef Py_ssize_t at = 4, end = PyBytes_GET_SIZE(body)
    cdef NameCache names
    cdef int32_t inst
    cdef WireQt w
    cdef Qt* q
    check_mark(body, b"L1Q1", "quote")
    names.name, names.size, names.inst = NULL, 0, 0
    quotes.keep.append(body)
    while at < end:
        if end - at < <Py_ssize_t>sizeof(WireQt):
            raise ValueError(f"quote {quotes.n} is cut short")
        memcpy(&w, base + at, sizeof(WireQt))
        at += sizeof(WireQt)
        if <uint64_t>w.inst_size + w.time_size > <uint64_t>(end - at):
            raise ValueError(f"quote {quotes.n} is cut short")
        if not time_ok(w.time_ns, w.time_size):
            raise ValueError(f"quote {quotes.n} has a field out of range")
        inst = intern_cached(table, &names, base + at, w.inst_size)
        at += w.inst_size
        q = quotes.add()
        q.bid = w.bid
        q.ask = w.ask
        q.bid_size = w.bid_size
        q.ask_size = w.ask_size
        q.time_ns = w.time_ns if w.time_ns >= 0 else -1
        q.seq = w.seq
        q.inst = inst
        check_text(base + at, w.time_size)
        q.time = time_text(w.time_ns, base + at, &quotes.arena)
        q.time_size = <int32_t>w.time_size if w.time_ns >= -1 else 30
        at += w.time_size
    return quotes
