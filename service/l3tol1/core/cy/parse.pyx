# cython: language_level=3, cdivision=True
"""The compiled core's CSV parser: L3 rows to an `EventBatch` and rejects (SPEC §1, §4, §9),
with the number and time rules of core/numbers.py in C. A row the fast path does not take
whole goes to the Python parser's `parse_row`, the reference, so every reject is its own."""

from libc.stdint cimport int64_t, int32_t, uint8_t, uint64_t
from libc.string cimport memchr, memcmp, memset
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE

from l3tol1.core.cy.constants cimport (
    ADD, BUY, DELETE, MAX_INSTRUMENT_BYTES, MAX_PRICE, MAX_QTY, MAX_SEQ_TEXT, PRICE_DIGITS,
    PRICE_SCALE, SELL,
)
from l3tol1.core.cy.records cimport Ev, EventBatch, InstrumentTable, digits_at

from l3tol1.core.csv_parser import CsvParser as PyCsvParser
from l3tol1.core.csv_parser import too_long_reject
from l3tol1.core.records import Reason, Reject


# The fast path reads a line 8 bytes at a time (SWAR): a word's commas, and whether it holds a
# byte left to the reference parser (non-ASCII, a quote, a stray CR), in a few operations
# instead of a load and a branch per byte.
cdef extern from *:
    """
    #include <string.h>
    #define L3TOL1_ONES UINT64_C(0x0101010101010101)
    #define L3TOL1_HIGHS UINT64_C(0x8080808080808080)
    #define L3TOL1_LOWS UINT64_C(0x7F7F7F7F7F7F7F7F)
    #define L3TOL1_ZEROS UINT64_C(0x3030303030303030)
    /* 8 bytes as a little-endian word, so that byte k is bits 8k..8k+7 on any CPU */
    static inline uint64_t l3tol1_load_le(const char* p) {
        uint64_t w;
        memcpy(&w, p, 8);
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        w = __builtin_bswap64(w);
    #endif
        return w;
    }
    /* Where SSE2 is (every x86-64): 16 bytes at a time, a bit per byte. Elsewhere the 8-byte
       words alone, which also read the last bytes of every line here. */
    #if defined(__SSE2__)
    #include <emmintrin.h>
    #define L3TOL1_SSE2 1
    /* Bit k of *commas: byte k of the 16 at p is a comma. Not 0: one of them is odd (a quote,
       or under 0x20 or over 0x7F: signed bytes). */
    static inline int l3tol1_block16(const char* p, unsigned* commas) {
        __m128i v = _mm_loadu_si128((const __m128i*)p);
        __m128i odd = _mm_or_si128(_mm_cmplt_epi8(v, _mm_set1_epi8(0x20)),
                                   _mm_cmpeq_epi8(v, _mm_set1_epi8(34)));
        *commas = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(44)));
        return _mm_movemask_epi8(odd);
    }
    #else
    #define L3TOL1_SSE2 0
    static inline int l3tol1_block16(const char* p, unsigned* commas) {
        (void)p;
        *commas = 0;
        return 1;
    }
    #endif
    """
    bint HAS_SSE2 "L3TOL1_SSE2"
    int block16 "l3tol1_block16"(const char* p, unsigned* commas) noexcept nogil
    uint64_t load_le "l3tol1_load_le"(const char* p) noexcept nogil
    int count_trailing_zeros "__builtin_ctzll"(unsigned long long x) noexcept nogil
    const uint64_t ONES "L3TOL1_ONES"  # 1 in each byte
    const uint64_t HIGHS "L3TOL1_HIGHS"  # each byte's high bit
    const uint64_t LOWS "L3TOL1_LOWS"  # each byte's other bits
    const uint64_t ZEROS "L3TOL1_ZEROS"  # "0" in each byte

cdef enum:
    WORD = 8
    BLOCK = 16




cdef inline bint all_digits_word(uint64_t w) noexcept nogil:
    """Whether each byte of ``w`` is "0" to "9": a byte over "9" sets its high bit in the sum,
    one under "0" in the difference (a carry or borrow only follows a byte that set one)."""
    return ((w + 0x4646464646464646ULL) | (w - ZEROS)) & HIGHS == 0


cdef inline uint64_t eight_digits(uint64_t w) noexcept nogil:
    """The value of the 8 decimal digits of ``w`` (the first in its low byte): pairs, then
    fours, then the eight, each by one multiplication."""
    w = ((w & 0x0F0F0F0F0F0F0F0FULL) * 2561) >> 8
    w = ((w & 0x00FF00FF00FF00FFULL) * 6553601) >> 16
    return ((w & 0x0000FFFF0000FFFFULL) * 42949672960001ULL) >> 32


# -- numbers (the rules of numbers.py, in C) -------------------------------------------------------

cdef inline bint all_digits(const char* p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if p[i] < 48 or p[i] > 57:
            return False
    return True


cdef inline bint parse_seq(const char* p, Py_ssize_t n, uint64_t* out) noexcept nogil:
    cdef uint64_t value = 0, digit, w
    cdef Py_ssize_t i
    if 0 < n < 20:
        # Below 10^19 whatever the digits: no bound to check, one pass; the first n % 8 digits
        # one by one, then 8 at a time.
        for i in range(n % WORD):
            digit = <uint64_t>(<uint8_t>p[i] - 48)
            if digit > 9:
                return False
            value = value * 10 + digit
        i = n % WORD
        while i < n:
            w = load_le(p + i)
            if not all_digits_word(w):
                return False
            value = value * 100000000 + eight_digits(w)
            i += WORD
        out[0] = value
        return True
    if n == 0 or not all_digits(p, n):
        return False
    while n > 1 and p[0] == 48:
        p += 1
        n -= 1
    if n > 20 or (n == 20 and memcmp(p, MAX_SEQ_TEXT, 20) > 0):
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
    cdef uint64_t value = 0, scale = PRICE_SCALE
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
    if whole - i > 10 or fraction > PRICE_DIGITS:
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
    # The fewest bytes of a valid row with its newline: 15 commas, a seq, an order id, a side,
    # a time, a price and a qty (but for a delete).
    MIN_ROW = 15 + 1 + 1 + 3 + 23 + 1


cdef inline uint64_t load_tail(const char* p, Py_ssize_t n, const char* end) noexcept nogil:
    """The ``n`` (1 to 7) bytes at ``p`` as a little-endian word, the rest "0" (neither a comma
    nor an odd byte); one load when 8 bytes are there to read before ``end``."""
    cdef uint64_t w = 0
    cdef uint64_t kept = (<uint64_t>1 << (8 * n)) - 1
    cdef Py_ssize_t i
    if end - p >= WORD:
        w = load_le(p) & kept
    else:
        for i in range(n):
            w |= <uint64_t><uint8_t>p[i] << (8 * i)
    return w | (ZEROS & ~kept)


cdef inline uint64_t bytes_equal(uint64_t w, uint8_t c) noexcept nogil:
    """The high bit of each byte of ``w`` equal to ``c``, and only those (no carry between
    bytes)."""
    cdef uint64_t t = w ^ (ONES * c)
    return ~(((t & LOWS) + LOWS) | t) & HIGHS


cdef inline uint64_t any_equal(uint64_t w, uint8_t c) noexcept nogil:
    """Not 0 when a byte of ``w`` equals ``c`` (cheaper than `bytes_equal`: which bytes, it
    can get wrong)."""
    cdef uint64_t t = w ^ (ONES * c)
    return (t - ONES) & ~t & HIGHS


cdef inline uint64_t any_odd(uint64_t w) noexcept nogil:
    """Not 0 when ``w`` holds a byte left to the reference parser: a quote, or one that is not
    printable ASCII (a CR among them; the rare tab or other control byte goes the slow way
    too, where it gets the same verdict)."""
    return (((w - ONES * 0x20) | w) & HIGHS) | any_equal(w, 34)


cdef inline bint time_tail_is_valid(const char* p, Py_ssize_t n) noexcept nogil:
    """What `time_is_valid` asks of a time after its second: the length, "." and 0 to 6 digits
    when there is a fraction, " UTC"."""
    if n < 23 or n > 30 or memcmp(p + n - 4, b" UTC", 4) != 0:
        return False
    cdef uint64_t w, before
    if n <= 24:
        return n == 23 or p[19] == 46
    # The fraction's n - 24 digits are the last bytes of the 8 before " UTC" (n >= 24: all in
    # the field); the bytes before them count as "0".
    w = load_le(p + n - 12)
    before = (<uint64_t>1 << (8 * (32 - n))) - 1
    return p[19] == 46 and all_digits_word((w & ~before) | (ZEROS & before))


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
    # The first 19 bytes (to the second) of the last time `time_is_valid` accepted, as words
    # at 0, 8 and 11: most rows share it, and need only their fraction and " UTC" checked.
    cdef uint64_t second[3]
    cdef bint have_second
    cdef bint ns_times  # a time must also be an int64 of ns (the output schemas)

    def __init__(self, InstrumentTable table not None, str header, *, instrument_column=None,
                 max_line=None, ns_times=False):
        kwargs = {} if max_line is None else {"max_line": max_line}
        self.py = PyCsvParser(
            header, instrument_column=instrument_column, ns_times=ns_times, **kwargs
        )
        self.ns_times = ns_times
        self.table = table
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

    def parse(self, bytes data not None, Py_ssize_t first_line):
        """Parse whole lines, each ending in a newline, numbered from ``first_line``."""
        cdef EventBatch events = EventBatch(self.table)
        cdef list rejects = []
        cdef const char* p = PyBytes_AS_STRING(data)
        cdef const char* end = p + PyBytes_GET_SIZE(data)
        cdef const char* newline
        cdef Py_ssize_t line = first_line
        events.keep.append(data)
        newline = <const char*>memchr(p, 10, end - p)
        if newline != NULL:
            # Room for the batch's events at once, guessed from its first line (a quarter more,
            # for longer and shorter ones; no guess under a row's least size), so that the
            # array is not copied as it grows.
            events.reserve((end - p) // max(newline - p + 1, MIN_ROW) * 5 // 4 + 16)
        while p < end:
            newline = <const char*>memchr(p, 10, end - p)
            if newline == NULL:
                newline = end
            if not self.fast(p, newline - p, end, line, events):
                self.slow(p, newline - p, line, events, rejects)
            p = newline + 1
            line += 1
        return events, rejects

    cdef bint fast(self, const char* p, Py_ssize_t size, const char* end, Py_ssize_t line,
                   EventBatch events) except -1:
        """Add the event of the line of ``size`` bytes at ``p`` (``end``: the end of the batch)
        when it is a common row; False, nothing added, for any other."""
        # A block's commas are counted before the count is checked: up to BLOCK - 1 past it.
        cdef Py_ssize_t starts[MAX_FIELDS + BLOCK + 1]
        cdef Py_ssize_t count = 0, i, n = size
        cdef int action = -1, a
        cdef int field_count = self.field_count
        cdef uint64_t w, commas
        cdef unsigned block_commas
        cdef const char* f
        cdef Py_ssize_t flen
        cdef uint64_t seq
        cdef int64_t price = 0, qty = 0
        cdef Ev* e
        cdef int side
        if size > self.max_line or field_count < 0:
            return False
        if n and p[n - 1] == 13:  # one CR before the newline
            n -= 1
        starts[0] = 0
        i = 0
        while HAS_SSE2 and n - i >= BLOCK:
            if block16(p + i, &block_commas):
                return False
            while block_commas:
                count += 1
                starts[count] = i + count_trailing_zeros(block_commas) + 1
                block_commas &= block_commas - 1
            if count >= field_count:
                return False
            i += BLOCK
        while i < n:
            if n - i >= WORD:
                w = load_le(p + i)
            else:
                w = load_tail(p + i, n - i, end)
            if any_odd(w):
                return False
            commas = bytes_equal(w, 44)
            while commas:
                count += 1
                starts[count] = i + (count_trailing_zeros(commas) >> 3) + 1
                commas &= commas - 1
            if count >= field_count:
                return False
            i += WORD
        if count + 1 != field_count:
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
            side = BUY
        elif flen == 4 and memcmp(f, b"SELL", 4) == 0:
            side = SELL
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
        if not time_tail_is_valid(f, flen):
            return False
        if not (self.have_second and self.second[0] == load_le(f)
                and self.second[1] == load_le(f + 8) and self.second[2] == load_le(f + 11)):
            if not time_is_valid(f, flen):
                return False
            if self.ns_times and not 1678 <= digits_at(f, 0, 4) <= 2261:
                return False  # it may not be an int64 of ns: the reference decides
            self.second[0] = load_le(f)
            self.second[1] = load_le(f + 8)
            self.second[2] = load_le(f + 11)
            self.have_second = True
        if events.n < events.capacity:  # no call but to grow
            e = &events.ev[events.n]
            events.n += 1
        else:
            e = events.add()
        if self.inst_i >= 0:
            i = starts[self.inst_i + 1] - 1 - starts[self.inst_i]
            if i < 1 or i > MAX_INSTRUMENT_BYTES:
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
        e.ts_event = 0
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
