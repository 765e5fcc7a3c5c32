# What every module of the compiled core shares: memory (growing arrays, an arena of strings),
# hashing, the table of instrument names, and the batches of events and quotes that travel
# between the stages (C arrays of fixed-size records whose strings point into bytes they keep).
# The small helpers are `cdef inline` here, so that they are compiled into each hot loop that
# uses them, as when the compiled core was one module.

from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcmp, memcpy, memset
from cpython.unicode cimport PyUnicode_DecodeUTF8

from l3tol1.core.cy.constants cimport (
    TIME_BITS_DAY, TIME_BITS_HOUR, TIME_BITS_MICROS, TIME_BITS_MINUTE, TIME_BITS_MONTH,
    TIME_BITS_SECOND,
)


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


cdef inline const char* arena_put(Arena* arena, const char* text, size_t size) except NULL:
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


cdef inline void arena_free(Arena* arena) noexcept:
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


# -- digits and times, written and read back byte for byte -----------------------------------------

cdef inline int write_u64(char* out, uint64_t value) noexcept nogil:
    """The decimal digits of ``value`` into ``out`` (20 bytes at least); their count."""
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
    """The fields of a canonical CSV time (``YYYY-MM-DD HH:MM:SS.ffffff UTC``) in 60 bits, when
    ``t`` is one that `render_time` writes back (the rule of core/wire.py's `pack_time`)."""
    cdef int64_t year, month, day, hour, minute, second, micros
    cdef uint64_t packed
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
    if year < 0 or micros < 0 or not (0 <= month < 1 << TIME_BITS_MONTH):
        return False
    if not (0 <= day < 1 << TIME_BITS_DAY and 0 <= hour < 1 << TIME_BITS_HOUR):
        return False
    if not (0 <= minute < 1 << TIME_BITS_MINUTE and 0 <= second < 1 << TIME_BITS_SECOND):
        return False
    packed = <uint64_t>year
    packed = packed << TIME_BITS_MONTH | <uint64_t>month
    packed = packed << TIME_BITS_DAY | <uint64_t>day
    packed = packed << TIME_BITS_HOUR | <uint64_t>hour
    packed = packed << TIME_BITS_MINUTE | <uint64_t>minute
    packed = packed << TIME_BITS_SECOND | <uint64_t>second
    out[0] = packed << TIME_BITS_MICROS | <uint64_t>micros
    return True


cdef inline void put_digits(char* out, uint64_t value, int width) noexcept:
    cdef int i
    for i in range(width - 1, -1, -1):
        out[i] = <char>(48 + value % 10)
        value //= 10


cdef inline void render_time(uint64_t packed, char* out) noexcept:
    """The 30 bytes that `pack_time` packed (of any 60 bits: a field too large for its width
    keeps its last digits, as core/wire.py's `render_time` does)."""
    put_digits(out + 20, packed & ((1 << TIME_BITS_MICROS) - 1), 6)
    packed >>= TIME_BITS_MICROS
    put_digits(out + 17, packed & ((1 << TIME_BITS_SECOND) - 1), 2)
    packed >>= TIME_BITS_SECOND
    put_digits(out + 14, packed & ((1 << TIME_BITS_MINUTE) - 1), 2)
    packed >>= TIME_BITS_MINUTE
    put_digits(out + 11, packed & ((1 << TIME_BITS_HOUR) - 1), 2)
    packed >>= TIME_BITS_HOUR
    put_digits(out + 8, packed & ((1 << TIME_BITS_DAY) - 1), 2)
    packed >>= TIME_BITS_DAY
    put_digits(out + 5, packed & ((1 << TIME_BITS_MONTH) - 1), 2)
    packed >>= TIME_BITS_MONTH
    put_digits(out, packed, 4)
    out[4] = out[7] = 45
    out[10] = 32
    out[13] = out[16] = 58
    out[19] = 46
    memcpy(out + 26, b" UTC", 4)


# -- instrument names ------------------------------------------------------------------------------

cdef struct NameSlot:
    uint64_t hash
    int32_t index
    int32_t size
    char* text


cdef class InstrumentTable:
    cdef NameSlot* slots
    cdef Py_ssize_t capacity
    cdef public list names
    cdef list fields  # each name as a CSV field, bytes
    # By index: each name's bytes (the slot's), size and CRC-32 (its partition, SPEC §13).
    cdef const char** text_at
    cdef int32_t* size_at
    cdef uint32_t* crc_at
    cdef Py_ssize_t at_cap

    cdef int32_t intern(self, const char* text, Py_ssize_t size) except -1
    cdef void _grow(self) except *
    cpdef int32_t index(self, str name) except -1


# -- small maps ------------------------------------------------------------------------------------

cdef class U64Table:
    # Nonzero uint64 keys to int64 values, by open addressing (linear probing, no deletion): the
    # compiled core's small maps of ids (Databento's books, the names of their days), without a
    # Python object per entry.
    cdef uint64_t* keys  # 0: an empty slot
    cdef int64_t* values
    cdef Py_ssize_t capacity, count

    cdef Py_ssize_t slot(self, uint64_t key) noexcept
    cdef void put(self, uint64_t key, int64_t value) except *
    cdef void _grow(self) except *


# -- events ----------------------------------------------------------------------------------------

cdef struct Ev:
    uint64_t seq
    int64_t price
    int64_t qty
    int64_t line
    int64_t time_ns  # -1: the time is the text at `time`
    int64_t ts_event  # Databento: the record's ts_event (ns); L3 CSV: 0, its time is both
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
    cdef Ev* ev
    cdef Py_ssize_t n
    cdef Py_ssize_t capacity
    cdef list keep
    cdef Arena arena
    cdef InstrumentTable table

    cdef void reserve(self, Py_ssize_t count) except *
    cdef Ev* add(self) except NULL
    cdef void own(self, Ev* e) except *
    cdef void append_event(self, object event) except *
    cdef object event(self, Ev* e)


cdef object event_of(Ev* e, InstrumentTable table)


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
    cdef Qt* q
    cdef Py_ssize_t n
    cdef Py_ssize_t capacity
    cdef list keep
    cdef Arena arena  # times rendered from a message body's packed form
    cdef InstrumentTable table

    cdef Qt* add(self) except NULL


# -- rows of the output schemas (SPEC §14) ---------------------------------------------------------

cdef enum:
    ROW_HAS_PRICE = 1
    ROW_HAS_SIZE = 2


cdef struct RowRec:
    int64_t ts_recv
    int64_t ts_event
    int64_t price  # when `has` & ROW_HAS_PRICE
    int64_t size  # when `has` & ROW_HAS_SIZE
    uint64_t seq
    int32_t inst
    uint8_t action  # the letter; 0: none (a sampled row without a trade)
    uint8_t side  # the letter; 0: none
    uint8_t flags
    uint8_t has
    uint8_t bids  # levels shown on each side (the others are empty)
    uint8_t asks


cdef class RowBatch:
    cdef RowRec* r
    cdef int64_t* levels  # 6 * depth per row, in the columns' order; 0 where a side has none
    cdef Py_ssize_t n
    cdef Py_ssize_t capacity
    cdef public int depth  # levels per side, fixed by the first row (0: none yet)
    cdef InstrumentTable table

    cdef RowRec* add(self, int depth) except NULL
    cdef object row(self, Py_ssize_t i)


cdef object levels_of(const int64_t* levels, int depth, int bids, int asks)
