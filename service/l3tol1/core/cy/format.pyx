# cython: language_level=3, cdivision=True
"""The compiled core's formatters: L1 rows (SPEC §2) and the output schemas' rows (SPEC §14),
written from cached price texts into one growing buffer, byte for byte as core/l1.py and
core/schemas.py write them."""

from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8

from l3tol1.core.cy.records cimport (
    ROW_HAS_PRICE, ROW_HAS_SIZE, Qt, QuoteBatch, RowBatch, RowRec, grow, mix, write_u64,
)

from l3tol1.core.numbers import format_price
from l3tol1.core.schemas import csv_columns


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

    def format(self, QuoteBatch quotes not None):
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


# -- the output schemas' rows (SPEC §14) -----------------------------------------------------------

# "00" to "99": integers are written two digits at a time (a row of mbp-10 has 60 fields).
cdef char DIGIT_PAIRS[200]
for _i in range(100):
    DIGIT_PAIRS[2 * _i] = 48 + _i // 10
    DIGIT_PAIRS[2 * _i + 1] = 48 + _i % 10
del _i


cdef inline int write_digits(char* out, uint64_t value) noexcept nogil:
    """The decimal digits of ``value`` into ``out`` (20 bytes at least); their count."""
    cdef int n = 1
    cdef uint64_t bound = 10, q
    cdef char* at
    if value < 10:
        out[0] = <char>(48 + value)
        return 1
    while n < 20 and value >= bound:
        n += 1
        if n == 20:
            break
        bound *= 10
    at = out + n
    while value >= 100:
        q = value // 100
        at -= 2
        memcpy(at, DIGIT_PAIRS + 2 * (value - q * 100), 2)
        value = q
    if value >= 10:
        memcpy(at - 2, DIGIT_PAIRS + 2 * value, 2)
    else:
        (at - 1)[0] = <char>(48 + value)
    return n


cdef inline int write_i64(char* out, int64_t value) noexcept nogil:
    if value < 0:
        out[0] = 45
        return 1 + write_digits(out + 1, <uint64_t>0 - <uint64_t>value)
    return write_digits(out, <uint64_t>value)


cdef class RowFormatter:
    """A schema's rows as CSV lines, byte for byte as core/schemas.py's `RowFormatter`."""

    cdef public object schema
    cdef public bint with_instrument
    cdef L1Formatter prices  # its price texts
    cdef char* out
    cdef Py_ssize_t out_cap
    cdef object reference  # core/schemas.py's formatter, for rows that are not a RowBatch

    def __init__(self, schema, *, with_instrument=False):
        self.schema = schema
        self.with_instrument = with_instrument
        self.prices = L1Formatter()

    def __dealloc__(self):
        free(self.out)

    def header(self):
        return ",".join(csv_columns(self.schema, self.with_instrument)) + "\n"

    cdef inline char* price(self, char* w, int64_t price) except NULL:
        cdef PriceText* t = self.prices.price_text(price)
        memcpy(w, t.text, t.size)
        return w + t.size

    def format(self, rows not None):
        """The CSV lines of ``rows`` (a `RowBatch`; rows from elsewhere, as `collect` unpacks
        them from the wire, are formatted by the reference), each ending in LF."""
        if type(rows) is RowBatch:
            return self.format_batch(<RowBatch>rows)
        if self.reference is None:
            from l3tol1.core.schemas import RowFormatter as Reference

            self.reference = Reference(self.schema, with_instrument=self.with_instrument)
        return self.reference.format(rows)

    cdef object format_batch(self, RowBatch rows):
        """The CSV lines of a batch, in C."""
        cdef Py_ssize_t i, n = 0, need
        cdef int level, depth = rows.depth
        cdef RowRec* r
        cdef const int64_t* lv
        cdef char* w
        cdef bytes name
        cdef list fields = rows.table.fields
        for i in range(rows.n):
            r = &rows.r[i]
            name = fields[r.inst] if self.with_instrument else b""
            need = n + 160 + PyBytes_GET_SIZE(name) + depth * 6 * 32
            if need > self.out_cap:
                self.out_cap = need * 2 + 65536
                self.out = <char*>grow(self.out, self.out_cap)
            w = self.out + n
            w += write_i64(w, r.ts_recv)
            w[0] = 44
            w += 1
            w += write_i64(w, r.ts_event)
            w[0] = 44
            w += 1
            if self.with_instrument:
                memcpy(w, PyBytes_AS_STRING(name), PyBytes_GET_SIZE(name))
                w += PyBytes_GET_SIZE(name)
                w[0] = 44
                w += 1
            if r.action:
                w[0] = r.action
                w += 1
            w[0] = 44
            w += 1
            if r.side:
                w[0] = r.side
                w += 1
            w[0] = 44
            w += 1
            if r.has & ROW_HAS_PRICE:
                w = self.price(w, r.price)
            w[0] = 44
            w += 1
            if r.has & ROW_HAS_SIZE:
                w += write_i64(w, r.size)
            w[0] = 44
            w += 1
            w += write_digits(w, r.seq)
            w[0] = 44
            w += 1
            w += write_digits(w, r.flags)
            lv = rows.levels + i * 6 * depth
            for level in range(depth):
                w[0] = 44
                w += 1
                if level < r.bids:
                    w = self.price(w, lv[0])
                w[0] = 44
                w += 1
                if level < r.asks:
                    w = self.price(w, lv[1])
                w[0] = 44
                w += 1
                if level < r.bids:
                    w += write_i64(w, lv[2])
                w[0] = 44
                w += 1
                if level < r.asks:
                    w += write_i64(w, lv[3])
                w[0] = 44
                w += 1
                if level < r.bids:
                    w += write_i64(w, lv[4])
                w[0] = 44
                w += 1
                if level < r.asks:
                    w += write_i64(w, lv[5])
                lv += 6
            w[0] = 10
            w += 1
            n = w - self.out
        return PyUnicode_DecodeUTF8(self.out, n, NULL)
