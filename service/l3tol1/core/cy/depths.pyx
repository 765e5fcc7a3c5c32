# cython: language_level=3, cdivision=True
"""The compiled core's output schemas (SPEC §14): the rules of core/schemas.py's `Depths`, over
whole batches, writing a `RowBatch`.

Each instrument has its own table of orders (a clear empties one table) and, per side, its
levels in sorted arrays (price ranks ascending, the best last, with each level's summed size and
order count beside it): the N best levels are the last N entries, never a scan, and a change
near the top (the common case) moves few entries."""

from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcmp, memcpy, memmove, memset

from l3tol1.core.cy.constants cimport (
    A_ADD_LIVE, A_CANCEL_EXCEEDS, A_CANCEL_UNKNOWN, A_DELETE_UNKNOWN, A_TRADE_EXCEEDS,
    A_TRADE_UNKNOWN, A_UPDATE_UNKNOWN, ADD, ANOMALY_KINDS, CANCEL, CLEAR, DELETE, FLAG_ANOMALY,
    FLAG_CROSSED, FLAG_GAP, FLAG_LOCKED, NS_PER_DAY, PRINT, TRADE, UNDEF_PRICE, UPDATE,
)
from l3tol1.core.cy.records cimport (
    ROW_HAS_PRICE, ROW_HAS_SIZE, Ev, EventBatch, InstrumentTable, RowBatch, RowRec, event_of,
    grow, hash_bytes, levels_of, text_of,
)

from l3tol1.core.instruments import InstrumentState
from l3tol1.core.records import Anomaly
from l3tol1.core.schemas import ACTION_CHARS, SIDE_CHARS, DepthBook, DepthsState, DepthState

_ANOMALIES = tuple(Anomaly)

# Each action's and side's letter in a row (core/schemas.py's tables), by value.
cdef uint8_t ACTION_LETTER[16]
cdef uint8_t SIDE_LETTER[4]
memset(ACTION_LETTER, 0, sizeof(ACTION_LETTER))
memset(SIDE_LETTER, 0, sizeof(SIDE_LETTER))
for _i, _char in enumerate(ACTION_CHARS):
    ACTION_LETTER[_i] = ord(_char)
for _i, _char in enumerate(SIDE_CHARS):
    SIDE_LETTER[_i] = ord(_char)
del _i, _char


# -- one instrument's book -------------------------------------------------------------------------

cdef struct Order:
    uint64_t hash  # 0 empty, 1 removed
    int64_t price
    int64_t qty
    char* key_heap  # the order id, when it does not fit `key`
    int32_t key_size
    uint8_t side
    char key[19]


cdef struct Ladder:
    # One side's levels, by rank ascending (the best last): a bid's rank is its price, an ask's
    # the bitwise NOT of its price (which reverses the order of every int64, -2^63 included).
    int64_t* rank
    int64_t* qty
    int64_t* count
    Py_ssize_t n
    Py_ssize_t capacity


cdef struct Depth:
    Order* orders
    Py_ssize_t order_cap, order_used, order_removed
    Ladder sides[2]
    int64_t* shown  # the levels of its previous row (6 * depth, 0 where a side has none)
    int64_t* boundary  # the levels after its last event that ended a venue event
    int64_t gaps  # the gap count its previous row covered
    int64_t sample_ts_event, sample_ts_recv, trade_price, trade_size
    uint64_t sample_seq
    int64_t name_day  # the day whose row name is `name_inst` (keyed books), -1: none yet
    int32_t name_inst
    int32_t inst  # its key (the instrument's index)
    uint8_t shown_bids, shown_asks, bound_bids, bound_asks
    uint8_t anomaly, keyed, has_sample, has_trade, trade_side, trade_has
    uint8_t dirty  # the shown levels may differ from `boundary` (which is then refilled)


cdef inline const char* order_key(Order* o) noexcept:
    return o.key_heap if o.key_heap != NULL else o.key


cdef inline uint64_t order_hash(uint8_t side, const char* oid, int32_t size) noexcept nogil:
    return hash_bytes(oid, size, side * 0x9E3779B97F4A7C15ULL + 11)


cdef Order* find_order(Depth* d, uint8_t side, const char* oid, int32_t size, uint64_t h) noexcept:
    cdef Py_ssize_t mask, i
    cdef Order* o
    if d.order_cap == 0:
        return NULL
    mask = d.order_cap - 1
    i = <Py_ssize_t>(h & mask)
    while True:
        o = &d.orders[i]
        if o.hash == 0:
            return NULL
        if (o.hash == h and o.side == side and o.key_size == size
                and memcmp(order_key(o), oid, size) == 0):
            return o
        i = (i + 1) & mask


cdef void rehash_orders(Depth* d) except *:
    cdef Order* old = d.orders
    cdef Py_ssize_t old_cap = d.order_cap, i, j, mask
    cdef Py_ssize_t cap = 16
    cdef Order* table
    while (d.order_used + 1) * 4 > cap:
        cap *= 2
    table = <Order*>calloc(cap, sizeof(Order))
    if table == NULL:
        raise MemoryError()
    mask = cap - 1
    for i in range(old_cap):
        if old[i].hash > 1:
            j = <Py_ssize_t>(old[i].hash & mask)
            while table[j].hash:
                j = (j + 1) & mask
            table[j] = old[i]
    free(old)
    d.orders = table
    d.order_cap = cap
    d.order_removed = 0


cdef Order* new_order(Depth* d, uint8_t side, const char* oid, int32_t size, uint64_t h) except NULL:
    cdef Py_ssize_t mask, i
    cdef Order* o
    if (d.order_used + d.order_removed + 1) * 10 > d.order_cap * 7:
        rehash_orders(d)
    mask = d.order_cap - 1
    i = <Py_ssize_t>(h & mask)
    while d.orders[i].hash > 1:
        i = (i + 1) & mask
    o = &d.orders[i]
    if o.hash == 1:
        d.order_removed -= 1
    o.hash = h
    o.side = side
    o.key_size = size
    if size <= 19:
        o.key_heap = NULL
        memcpy(o.key, oid, size)
    else:
        o.key_heap = <char*>malloc(size)
        if o.key_heap == NULL:
            o.hash = 1
            d.order_removed += 1
            raise MemoryError()
        memcpy(o.key_heap, oid, size)
    d.order_used += 1
    return o


cdef inline void drop_order(Depth* d, Order* o) noexcept:
    free(o.key_heap)
    o.key_heap = NULL
    o.hash = 1
    d.order_used -= 1
    d.order_removed += 1


cdef inline int64_t rank_of(uint8_t side, int64_t price) noexcept nogil:
    return price if side == 0 else ~price


cdef inline Py_ssize_t lower_bound(Ladder* s, int64_t rank) noexcept nogil:
    """The first entry whose rank is at least ``rank``; searched from the best end first, where
    most changes are."""
    cdef Py_ssize_t lo = 0, hi = s.n, mid
    if s.n and s.rank[s.n - 1] < rank:
        return s.n
    while lo < hi:
        mid = (lo + hi) >> 1
        if s.rank[mid] < rank:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef bint put_level(Ladder* s, int64_t rank, int64_t qty, int depth) except -1:
    """``qty`` of one more order at the level of ``rank``; whether the ``depth`` best levels
    changed (an entry below them changes none of them: they are the last ``depth``)."""
    cdef Py_ssize_t i = lower_bound(s, rank), tail
    if i < s.n and s.rank[i] == rank:
        s.qty[i] += qty
        s.count[i] += 1
        return i >= s.n - depth
    if s.n == s.capacity:
        s.capacity = s.capacity * 2 + 16
        s.rank = <int64_t*>grow(s.rank, s.capacity * sizeof(int64_t))
        s.qty = <int64_t*>grow(s.qty, s.capacity * sizeof(int64_t))
        s.count = <int64_t*>grow(s.count, s.capacity * sizeof(int64_t))
    tail = s.n - i
    if tail:
        memmove(s.rank + i + 1, s.rank + i, tail * sizeof(int64_t))
        memmove(s.qty + i + 1, s.qty + i, tail * sizeof(int64_t))
        memmove(s.count + i + 1, s.count + i, tail * sizeof(int64_t))
    s.rank[i] = rank
    s.qty[i] = qty
    s.count[i] = 1
    s.n += 1
    return i >= s.n - depth


cdef bint take_level(Ladder* s, int64_t rank, int64_t qty, bint gone, int depth) noexcept:
    """``qty`` off the level of ``rank``; ``gone``: one order fewer there (none: it goes);
    whether the ``depth`` best levels changed."""
    cdef Py_ssize_t i = lower_bound(s, rank), tail
    cdef bint shown = i >= s.n - depth
    if i == s.n or s.rank[i] != rank:  # not reached: every order's level is there
        return False
    s.qty[i] -= qty
    if gone:
        s.count[i] -= 1
    if s.count[i] == 0:
        tail = s.n - i - 1
        if tail:
            memmove(s.rank + i, s.rank + i + 1, tail * sizeof(int64_t))
            memmove(s.qty + i, s.qty + i + 1, tail * sizeof(int64_t))
            memmove(s.count + i, s.count + i + 1, tail * sizeof(int64_t))
        s.n -= 1
    return shown


cdef void fill_levels(Depth* d, int depth, int64_t* out, uint8_t* bids, uint8_t* asks) noexcept:
    """The ``depth`` best levels of both sides into ``out``, in the columns' order."""
    cdef Ladder* b = &d.sides[0]
    cdef Ladder* a = &d.sides[1]
    cdef Py_ssize_t nb = b.n if b.n < depth else depth
    cdef Py_ssize_t na = a.n if a.n < depth else depth
    cdef Py_ssize_t i, j
    memset(out, 0, 6 * depth * sizeof(int64_t))
    for i in range(nb):
        j = b.n - 1 - i
        out[6 * i] = b.rank[j]
        out[6 * i + 2] = b.qty[j]
        out[6 * i + 4] = b.count[j]
    for i in range(na):
        j = a.n - 1 - i
        out[6 * i + 1] = ~a.rank[j]
        out[6 * i + 3] = a.qty[j]
        out[6 * i + 5] = a.count[j]
    bids[0] = <uint8_t>nb
    asks[0] = <uint8_t>na


cdef void clear_book(Depth* d) noexcept:
    cdef Py_ssize_t i
    for i in range(d.order_cap):
        if d.orders[i].hash > 1:
            free(d.orders[i].key_heap)
    free(d.orders)
    d.orders = NULL
    d.order_cap = d.order_used = d.order_removed = 0
    d.sides[0].n = d.sides[1].n = 0


cdef void free_depth(Depth* d) noexcept:
    cdef int s
    if d == NULL:
        return
    clear_book(d)
    for s in range(2):
        free(d.sides[s].rank)
        free(d.sides[s].qty)
        free(d.sides[s].count)
    free(d.shown)
    free(d.boundary)
    free(d)


cdef inline int64_t floor_div(int64_t a, int64_t b) noexcept nogil:
    cdef int64_t q = a // b
    if (a % b != 0) and ((a < 0) != (b < 0)):
        q -= 1
    return q


cdef inline int64_t days_from_civil(int64_t y, int64_t m, int64_t d) noexcept nogil:
    # Howard Hinnant's days-from-civil: a proleptic Gregorian date to days since 1970-01-01.
    cdef int64_t era, yoe, doy, doe
    y -= 1 if m <= 2 else 0
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


cdef inline int64_t digits(const char* t, int n) noexcept nogil:
    cdef int64_t v = 0
    cdef int i
    for i in range(n):
        v = v * 10 + (t[i] - 48)
    return v


cdef int64_t csv_seconds(const char* t, int32_t size) except? -1:
    """The second of an L3 CSV time (``YYYY-MM-DD HH:MM:SS[.ffffff] UTC``, validated by the
    parser) since the epoch, as core/schemas.py's `TimeNs` has it.

    :raises OverflowError: the time is beyond what int64 nanoseconds hold (1677 to 2262).
    """
    cdef int64_t seconds = (
        days_from_civil(digits(t, 4), digits(t + 5, 2), digits(t + 8, 2)) * 86400
        + digits(t + 11, 2) * 3600 + digits(t + 14, 2) * 60 + digits(t + 17, 2))
    if seconds < -9223372036 or seconds > 9223372035:
        raise OverflowError(f"time {text_of(t, size)!r} is beyond int64 nanoseconds")
    return seconds


cdef inline int64_t csv_fraction_ns(const char* t, int32_t size) noexcept nogil:
    """The fraction of a second of an L3 CSV time, in ns (0 to 6 digits)."""
    cdef int n = size - 24 if size > 24 else 0
    cdef int64_t fraction = digits(t + 20, n)
    cdef int i
    for i in range(n, 9):
        fraction *= 10
    return fraction


# -- every instrument, and the rows --------------------------------------------------------------

cdef class Depths:
    """The books of every kept instrument, with order counts, and the rows of one schema: the
    rules of core/schemas.py's `Depths`."""

    cdef InstrumentTable table
    cdef public object schema
    cdef public object keep
    cdef public object kept
    cdef public object name
    cdef int depth
    cdef bint trades, books
    cdef int64_t interval_ns
    cdef Depth** by_inst
    cdef uint8_t* decided  # per instrument index: 0 not met, 1 skipped, 2 kept
    cdef Py_ssize_t* kept_size  # a skipped one: len(kept) then (it is asked again if it grew)
    cdef Py_ssize_t inst_cap
    cdef list created  # instrument indexes with a Depth, in the order met
    cdef int64_t anomaly_counts[ANOMALY_KINDS]
    cdef public int64_t applied, skipped, crossed, locked, gaps
    cdef public object last_seq
    cdef bint has_interval
    cdef int64_t current  # the current interval's index, when has_interval
    cdef int64_t* scratch
    cdef uint64_t* gap_seqs  # this batch's gaps (`apply`), sorted
    cdef char second_text[19]  # the last L3 CSV time's "YYYY-MM-DD HH:MM:SS"...
    cdef int64_t second  # ...in seconds since the epoch (-1 << 62: none yet)
    cdef Py_ssize_t gap_n, gap_cap

    def __cinit__(self):
        self.by_inst = NULL
        self.decided = NULL
        self.kept_size = NULL
        self.inst_cap = 0
        self.scratch = NULL
        self.gap_seqs = NULL

    def __init__(self, InstrumentTable table not None, schema, keep=None, *, kept=None,
                 name=None):
        if not schema.rows:
            raise ValueError(f"schema {schema.name} has no rows of its own")
        self.table = table
        self.schema = schema
        self.depth = schema.depth
        self.trades = schema.trades
        self.books = schema.books
        self.interval_ns = schema.interval
        self.keep = None if keep is None else frozenset(keep)
        self.kept = kept if kept is not None else frozenset()
        self.name = name
        self.created = []
        self.applied = self.skipped = self.crossed = self.locked = self.gaps = 0
        self.last_seq = None
        self.has_interval = False
        self.current = 0
        self.second = -1 << 62
        self.scratch = <int64_t*>grow(self.scratch, 6 * self.depth * sizeof(int64_t))

    def __dealloc__(self):
        cdef Py_ssize_t i
        if self.by_inst != NULL:
            for i in range(self.inst_cap):
                free_depth(self.by_inst[i])
        free(self.by_inst)
        free(self.decided)
        free(self.kept_size)
        free(self.scratch)
        free(self.gap_seqs)

    @property
    def anomalies(self):
        return {_ANOMALIES[k]: int(self.anomaly_counts[k])
                for k in range(ANOMALY_KINDS) if self.anomaly_counts[k]}

    @property
    def interval(self):
        """The current interval's index (sampled schemas), None before the first event."""
        return self.current if self.has_interval else None

    def __len__(self):
        return len(self.created)

    def names(self):
        return frozenset(self.table.names[i] for i in self.created)

    def book(self, str name=""):
        """One instrument's book, as core/schemas.py's `DepthBook` (a copy)."""
        cdef int32_t inst = self.table.index(name)
        if inst >= self.inst_cap or self.by_inst[inst] == NULL:
            return DepthBook()
        return DepthBook.from_orders(self.orders_of(self.by_inst[inst]))

    def mark_gap(self):
        """A gap declared here, between events (the JetStream roles' marks)."""
        self.gaps += 1

    # -- instruments ---------------------------------------------------------------------------

    cdef Depth* depth_of(self, int32_t inst, bint keyed) except? NULL:
        """The instrument's Depth, made when it is first met and kept; NULL: not kept."""
        cdef Py_ssize_t old = self.inst_cap, cap
        cdef Depth* d
        if inst >= self.inst_cap:
            cap = max(inst + 1, self.inst_cap * 2 + 16)
            self.by_inst = <Depth**>grow(self.by_inst, cap * sizeof(Depth*))
            self.decided = <uint8_t*>grow(self.decided, cap)
            self.kept_size = <Py_ssize_t*>grow(self.kept_size, cap * sizeof(Py_ssize_t))
            memset(self.by_inst + old, 0, (cap - old) * sizeof(Depth*))
            memset(self.decided + old, 0, cap - old)
            self.inst_cap = cap
        if self.decided[inst] == 2:
            return self.by_inst[inst]
        if self.decided[inst] == 1 and self.kept_size[inst] == len(self.kept):
            return NULL
        key = self.table.names[inst]
        if not (self.keep is None or key in self.keep or key in self.kept):
            self.decided[inst] = 1
            self.kept_size[inst] = len(self.kept)
            return NULL
        d = self.new_depth(inst, keyed)
        self.decided[inst] = 2
        return d

    cdef Depth* new_depth(self, int32_t inst, bint keyed) except NULL:
        cdef Depth* d = <Depth*>calloc(1, sizeof(Depth))
        if d == NULL:
            raise MemoryError()
        d.shown = <int64_t*>calloc(6 * self.depth, sizeof(int64_t))
        d.boundary = <int64_t*>calloc(6 * self.depth, sizeof(int64_t))
        if d.shown == NULL or d.boundary == NULL:
            free_depth(d)
            raise MemoryError()
        d.inst = inst
        d.keyed = keyed
        d.name_day = -1
        self.by_inst[inst] = d
        self.created.append(inst)
        return d

    cdef int32_t row_name(self, Depth* d, int64_t ts_recv) except -1:
        """The instrument index that names the instrument's rows at ``ts_recv``: its key, or
        for a Databento book its name on that day (asked once per day)."""
        cdef int64_t day
        if not d.keyed or self.name is None:
            return d.inst
        day = floor_div(ts_recv, NS_PER_DAY)
        if day != d.name_day:
            d.name_inst = self.table.index(self.name(self.table.names[d.inst], ts_recv))
            d.name_day = day
        return d.name_inst

    # -- the rules -----------------------------------------------------------------------------

    def apply(self, EventBatch events not None, RowBatch rows not None, list anomalies,
              gaps=()):
        """Apply events in order; append the rows they write and the anomalies they show.
        ``gaps``: the seqs before which the resequencer declared a gap (SPEC §5)."""
        cdef Py_ssize_t i, skipped = 0
        cdef Ev* e
        cdef Depth* d
        cdef int64_t ts_recv, ts_event, k
        cdef int depth = self.depth
        cdef int64_t* scratch = self.scratch
        cdef uint8_t bids, asks, action
        cdef bint trade
        if events.n == 0:
            return
        self.load_gaps(gaps)
        for i in range(events.n):
            e = &events.ev[i]
            if self.gap_n and self.is_gap(e.seq):
                self.gaps += 1
            if e.inst < self.inst_cap and self.decided[e.inst] == 2:
                d = self.by_inst[e.inst]
            else:
                d = self.depth_of(e.inst, e.time_ns >= 0)
                if d == NULL:
                    skipped += 1
                    continue
            if e.time_ns >= 0:
                ts_recv = e.time_ns
                ts_event = e.ts_event
            else:  # an L3 CSV row: its time is both
                if self.second == -1 << 62 or memcmp(e.time, self.second_text, 19) != 0:
                    self.second = csv_seconds(e.time, e.time_size)
                    memcpy(self.second_text, e.time, 19)
                ts_recv = self.second * 1000000000 + csv_fraction_ns(e.time, e.time_size)
                ts_event = ts_recv
            if self.interval_ns:
                k = floor_div(ts_recv, self.interval_ns)
                if not self.has_interval:
                    self.has_interval = True
                    self.current = k
                elif k > self.current:
                    self.write_interval(rows)
                    self.current = k
            action = e.action
            trade = action == TRADE or action == PRINT
            if trade and self.trades:
                if d.dirty:
                    fill_levels(d, depth, scratch, &bids, &asks)
                    self.add_row(d, ts_recv, ts_event, e, scratch, bids, asks, rows)
                else:  # the book shows what it showed at its last boundary
                    self.add_row(d, ts_recv, ts_event, e, d.boundary, d.bound_bids,
                                 d.bound_asks, rows)
            self.apply_one(d, e, anomalies)
            # Unless the shown levels changed since the boundary (or a restore set `shown`
            # apart), the previous row shows them already: a book row needs no comparison.
            if e.last and d.dirty:
                d.dirty = 0
                fill_levels(d, depth, d.boundary, &d.bound_bids, &d.bound_asks)
                if self.books and (
                    d.bound_bids != d.shown_bids or d.bound_asks != d.shown_asks
                    or memcmp(d.boundary, d.shown, 6 * depth * sizeof(int64_t)) != 0
                ):
                    self.add_row(d, ts_recv, ts_event, e, d.boundary, d.bound_bids,
                                 d.bound_asks, rows)
            if self.interval_ns:
                if trade:
                    d.has_trade = 1
                    d.trade_side = SIDE_LETTER[e.side]
                    d.trade_has = row_has(e)
                    d.trade_price = e.price
                    d.trade_size = e.qty
                d.sample_ts_event = ts_event
                d.sample_seq = e.seq
                d.sample_ts_recv = ts_recv
                d.has_sample = 1
        self.applied += events.n - skipped
        self.skipped += skipped
        self.last_seq = events.ev[events.n - 1].seq

    def finish(self, RowBatch rows not None):
        """End of input (``--no-follow``): the current interval's rows."""
        if self.interval_ns and self.has_interval:
            self.write_interval(rows)

    cdef void load_gaps(self, gaps) except *:
        cdef Py_ssize_t i = 0
        self.gap_n = 0
        if not gaps:
            return
        seqs = sorted(gaps)
        if len(seqs) > self.gap_cap:
            self.gap_cap = len(seqs)
            self.gap_seqs = <uint64_t*>grow(self.gap_seqs, self.gap_cap * sizeof(uint64_t))
        for seq in seqs:
            self.gap_seqs[i] = seq
            i += 1
        self.gap_n = i

    cdef bint is_gap(self, uint64_t seq) noexcept:
        cdef uint64_t* seqs = self.gap_seqs
        cdef Py_ssize_t lo = 0, hi = self.gap_n, mid
        while lo < hi:
            mid = (lo + hi) >> 1
            if seqs[mid] < seq:
                lo = mid + 1
            else:
                hi = mid
        return lo < self.gap_n and seqs[lo] == seq

    cdef void add_row(self, Depth* d, int64_t ts_recv, int64_t ts_event, Ev* e,
                      int64_t* levels, uint8_t bids, uint8_t asks, RowBatch rows) except *:
        cdef int depth = self.depth
        cdef RowRec* r = rows.add(depth)
        r.ts_recv = ts_recv
        r.ts_event = ts_event
        r.inst = self.row_name(d, ts_recv)
        r.action = ACTION_LETTER[e.action]
        r.side = SIDE_LETTER[e.side]
        r.has = row_has(e)
        r.price = e.price
        r.size = e.qty
        r.seq = e.seq
        r.bids = bids
        r.asks = asks
        r.flags = self.flags(d, levels, bids, asks)
        memcpy(rows.levels + (rows.n - 1) * 6 * depth, levels, 6 * depth * sizeof(int64_t))
        if levels != d.shown:
            memcpy(d.shown, levels, 6 * depth * sizeof(int64_t))
        d.shown_bids = bids
        d.shown_asks = asks

    cdef uint8_t flags(self, Depth* d, int64_t* levels, uint8_t bids, uint8_t asks) noexcept:
        """The flags of the instrument's next row, which shows ``levels``; its marks restart."""
        cdef uint8_t flags = 0
        if bids and asks and levels[0] >= levels[1]:
            if levels[0] > levels[1]:
                flags = FLAG_CROSSED
                self.crossed += 1
            else:
                flags = FLAG_LOCKED
                self.locked += 1
        if d.gaps < self.gaps:
            flags |= FLAG_GAP
            d.gaps = self.gaps
        if d.anomaly:
            flags |= FLAG_ANOMALY
            d.anomaly = 0
        return flags

    cdef void write_interval(self, RowBatch rows) except *:
        """The current interval's rows: one per instrument with an event in it, by name."""
        cdef int64_t end = (self.current + 1) * self.interval_ns
        cdef int depth = self.depth
        cdef Depth* d
        cdef RowRec* r
        cdef Py_ssize_t order = 0
        cdef int32_t inst
        sampled = []
        for inst in self.created:
            d = self.by_inst[inst]
            if d.has_sample:
                named = self.row_name(d, d.sample_ts_recv)
                sampled.append((self.table.names[named].encode(), order, inst, named))
            order += 1
        sampled.sort()
        for _, _, inst, named in sampled:
            d = self.by_inst[inst]
            r = rows.add(depth)
            r.ts_recv = end
            r.ts_event = d.sample_ts_event
            r.inst = named
            r.seq = d.sample_seq
            if d.has_trade:
                r.action = 84  # T
                r.side = d.trade_side
                r.has = d.trade_has
                r.price = d.trade_price
                r.size = d.trade_size
            else:
                r.action = r.side = r.has = 0
                r.price = r.size = 0
            r.bids = d.bound_bids
            r.asks = d.bound_asks
            r.flags = self.flags(d, d.boundary, d.bound_bids, d.bound_asks)
            memcpy(rows.levels + (rows.n - 1) * 6 * depth, d.boundary,
                   6 * depth * sizeof(int64_t))
            memcpy(d.shown, d.boundary, 6 * depth * sizeof(int64_t))
            d.shown_bids = d.bound_bids
            d.shown_asks = d.bound_asks
            d.has_sample = d.has_trade = 0

    cdef inline void note(self, Depth* d, int kind, Ev* e, list anomalies) except *:
        self.anomaly_counts[kind] += 1
        anomalies.append((_ANOMALIES[kind], event_of(e, self.table)))
        # flag 8 (SPEC §14): a Databento cancel larger than what rests is counted, not flagged
        if kind != A_CANCEL_EXCEEDS:
            d.anomaly = 1

    cdef void apply_one(self, Depth* d, Ev* e, list anomalies) except *:
        """One event on its book: as `Depths._apply` does."""
        cdef uint8_t action = e.action, side
        cdef Order* o
        cdef uint64_t h
        cdef int64_t old_price, old_qty
        cdef Ladder* s
        cdef int depth = self.depth
        cdef bint changed = False
        if action == CLEAR:
            clear_book(d)
            d.dirty = 1
            return
        if action > CANCEL:  # NONE, PRINT, FILL: no change
            return
        side = e.side
        s = &d.sides[side]
        h = order_hash(side, e.oid, e.oid_size)
        o = find_order(d, side, e.oid, e.oid_size, h)
        if action <= UPDATE:
            if o != NULL:
                if action == ADD:
                    self.note(d, A_ADD_LIVE, e, anomalies)
                changed = take_level(s, rank_of(side, o.price), o.qty, True, depth)
                if e.qty <= 0:
                    drop_order(d, o)
            elif action == UPDATE:
                self.note(d, A_UPDATE_UNKNOWN, e, anomalies)
            if e.qty > 0:
                if o == NULL:
                    o = new_order(d, side, e.oid, e.oid_size, h)
                o.price = e.price
                o.qty = e.qty
                changed |= put_level(s, rank_of(side, e.price), e.qty, depth)
        elif action == DELETE:
            if o == NULL:
                self.note(d, A_DELETE_UNKNOWN, e, anomalies)
            else:
                changed = take_level(s, rank_of(side, o.price), o.qty, True, depth)
                drop_order(d, o)
        else:  # TRADE or CANCEL: subtract; the order goes at zero or below
            if o == NULL:
                self.note(d, A_TRADE_UNKNOWN if action == TRADE else A_CANCEL_UNKNOWN, e,
                          anomalies)
                return
            old_price = o.price
            old_qty = o.qty
            if e.qty >= old_qty:
                if e.qty > old_qty:
                    self.note(d, A_TRADE_EXCEEDS if action == TRADE else A_CANCEL_EXCEEDS, e,
                              anomalies)
                drop_order(d, o)
                changed = take_level(s, rank_of(side, old_price), old_qty, True, depth)
            elif e.qty > 0:
                o.qty = old_qty - e.qty
                changed = take_level(s, rank_of(side, old_price), e.qty, False, depth)
        if changed:
            d.dirty = 1

    # -- checkpointing -------------------------------------------------------------------------

    cdef list orders_of(self, Depth* d):
        cdef Py_ssize_t i
        cdef Order* o
        out = []
        for i in range(d.order_cap):
            o = &d.orders[i]
            if o.hash > 1:
                out.append((o.side, text_of(order_key(o), o.key_size), o.price, o.qty))
        out.sort(key=lambda order: order[0])
        return out

    def snapshot(self):
        cdef Depth* d
        cdef int32_t inst
        depths = []
        for inst in self.created:
            d = self.by_inst[inst]
            sample = None
            if d.has_sample:
                trade = None
                if d.has_trade:
                    trade = [chr(d.trade_side),
                             d.trade_price if d.trade_has & ROW_HAS_PRICE else None,
                             d.trade_size if d.trade_has & ROW_HAS_SIZE else None]
                sample = [d.sample_ts_event, d.sample_seq, d.sample_ts_recv, trade]
            depths.append(DepthState(
                InstrumentState(self.table.names[inst], self.orders_of(d), None),
                list(levels_of(d.shown, self.depth, d.shown_bids, d.shown_asks)),
                list(levels_of(d.boundary, self.depth, d.bound_bids, d.bound_asks)),
                d.gaps, d.anomaly != 0, sample, d.keyed != 0,
            ))
        return DepthsState(
            schema=self.schema.name, depths=depths, anomalies=self.anomalies,
            applied=self.applied, skipped=self.skipped, crossed=self.crossed,
            locked=self.locked, last_seq=self.last_seq, gaps=self.gaps, interval=self.interval,
        )

    def restore(self, state):
        """Load a `snapshot` (of either core)."""
        cdef Depth* d
        cdef int32_t inst
        cdef Order* o
        cdef uint8_t side
        if state.schema != self.schema.name:
            raise ValueError(f"a state of schema {state.schema} given to {self.schema.name}")
        for s in state.depths:
            inst = self.table.index(s.book.name)
            d = self.depth_of(inst, s.keyed)
            if d == NULL:  # kept when it was saved: it stays so
                d = self.new_depth(inst, s.keyed)
                self.decided[inst] = 2
            d.keyed = s.keyed
            for side, order_id, price, qty in s.book.orders:
                oid = order_id.encode()
                o = new_order(d, side, oid, len(oid), order_hash(side, oid, len(oid)))
                o.price, o.qty = price, qty
                put_level(&d.sides[side], rank_of(side, price), qty, self.depth)
            d.dirty = 1  # `shown` and `boundary` are compared again at its next boundary
            set_levels(s.shown, self.depth, d.shown, &d.shown_bids, &d.shown_asks)
            set_levels(s.boundary, self.depth, d.boundary, &d.bound_bids, &d.bound_asks)
            d.gaps = s.gaps
            d.anomaly = s.anomaly
            if s.sample is not None:
                ts_event, sequence, ts_recv, trade = s.sample
                d.has_sample = 1
                d.sample_ts_event, d.sample_seq, d.sample_ts_recv = ts_event, sequence, ts_recv
                if trade is not None:
                    d.has_trade = 1
                    d.trade_side = ord(trade[0])
                    d.trade_has = ((ROW_HAS_PRICE if trade[1] is not None else 0)
                                   | (ROW_HAS_SIZE if trade[2] is not None else 0))
                    d.trade_price = trade[1] if trade[1] is not None else 0
                    d.trade_size = trade[2] if trade[2] is not None else 0
        for kind, count in state.anomalies.items():
            self.anomaly_counts[_ANOMALIES.index(kind)] = count
        self.applied, self.skipped = state.applied, state.skipped
        self.crossed, self.locked = state.crossed, state.locked
        self.last_seq, self.gaps = state.last_seq, state.gaps
        self.has_interval = state.interval is not None
        self.current = state.interval if state.interval is not None else 0


cdef inline uint8_t row_has(Ev* e) noexcept:
    """Which of its price and size an event's row shows (`_price_size`): none for an L3 CSV
    DELETE, no price for Databento's undefined one."""
    if e.action == DELETE:
        return 0
    return ROW_HAS_SIZE | (0 if e.price == UNDEF_PRICE else ROW_HAS_PRICE)


cdef void set_levels(list values, int depth, int64_t* out, uint8_t* bids, uint8_t* asks) except *:
    """Levels as `Row.levels` holds them (None where a side has fewer) into ``out``."""
    cdef int i, nb = 0, na = 0
    memset(out, 0, 6 * depth * sizeof(int64_t))
    for i in range(depth):
        if values[6 * i] is not None:
            nb = i + 1
            out[6 * i], out[6 * i + 2], out[6 * i + 4] = (
                values[6 * i], values[6 * i + 2], values[6 * i + 4])
        if values[6 * i + 1] is not None:
            na = i + 1
            out[6 * i + 1], out[6 * i + 3], out[6 * i + 5] = (
                values[6 * i + 1], values[6 * i + 3], values[6 * i + 5])
    bids[0] = <uint8_t>nb
    asks[0] = <uint8_t>na
