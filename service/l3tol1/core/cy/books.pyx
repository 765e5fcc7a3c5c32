# cython: language_level=3, cdivision=True
"""The compiled core's books (SPEC §1-3, §9, §12): the rules of core/instruments.py and
core/book.py, over whole batches. Every order is in one hash table keyed by (instrument, side,
order id) and every price level in another keyed by (instrument, side, price); each book side
has a heap of its level prices with lazy deletion, as in the Python core."""

from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcmp, memcpy, memset

from l3tol1.core.cy.constants cimport (
    A_ADD_LIVE, A_CANCEL_EXCEEDS, A_CANCEL_UNKNOWN, A_DELETE_UNKNOWN, A_TRADE_EXCEEDS,
    A_TRADE_UNKNOWN, A_UPDATE_UNKNOWN, ADD, ANOMALY_KINDS, BUY, CANCEL, CLEAR, COMPACT_SLACK,
    DELETE, SELL, TRADE, UPDATE,
)
from l3tol1.core.cy.records cimport (
    Ev, EventBatch, InstrumentTable, Qt, QuoteBatch, event_of, grow, hash_bytes, mix, text_of,
)

from l3tol1.core.book import OrderBook
from l3tol1.core.instruments import InstrumentsState, InstrumentState
from l3tol1.core.records import Anomaly

cdef extern from *:
    """
    #define L3_PREFETCH(p) __builtin_prefetch((p), 1, 3)
    """
    void L3_PREFETCH(const void* p) noexcept nogil

# How many events ahead `apply` asks for the memory of an event's order, level and book: with
# many instruments the tables outgrow the caches, and a lookup that waits for memory costs more
# than all its instructions. Asked early, the misses of several events overlap.
cdef enum:
    AHEAD = 8

# Each anomaly kind by its place in the enum (the A_* constants, checked at import).
_ANOMALIES = tuple(Anomaly)


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
    return ~price if side == BUY else price


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
    cdef int64_t anomaly_counts[ANOMALY_KINDS]
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

    def __init__(self, InstrumentTable table not None, keep=None, *, kept=None):
        self.table = table
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
        return {_ANOMALIES[k]: int(self.anomaly_counts[k]) for k in range(ANOMALY_KINDS) if self.anomaly_counts[k]}

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

    cdef inline uint64_t ask_ahead(self, Ev* e) noexcept:
        """Ask for the memory `apply` will touch for event ``e``; its order hash (0: none)."""
        cdef uint64_t h
        if e.inst < self.book_cap:
            L3_PREFETCH(&self.books[e.inst])
        if e.action > CANCEL:
            return 0
        h = order_hash(e.inst, e.side, e.oid, e.oid_size)
        L3_PREFETCH(&self.orders[h & (self.order_cap - 1)])
        if e.action <= UPDATE:
            L3_PREFETCH(&self.levels[level_hash(e.inst, e.side, e.price) & (self.level_cap - 1)])
        return h

    def apply(self, EventBatch events not None, QuoteBatch quotes not None, list anomalies):
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
        cdef Ev* f
        cdef uint64_t hashes[AHEAD]  # the order hashes of the events asked for ahead
        if events.n == 0:
            return
        quotes.keep.append(events)
        for i in range(min(AHEAD, events.n)):
            hashes[i] = self.ask_ahead(&events.ev[i])
        for i in range(events.n):
            e = &events.ev[i]
            h = hashes[i % AHEAD]
            if i + AHEAD < events.n:
                hashes[i % AHEAD] = self.ask_ahead(&events.ev[i + AHEAD])
            inst = e.inst
            if inst < self.book_cap and self.books[inst].decided:
                b = &self.books[inst]
            else:  # met first: the cold path, out of the loop's way
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
                if b.sides[BUY].n and b.sides[SELL].n:
                    bid = heap_key(BUY, b.sides[BUY].heap[0])
                    ask = b.sides[SELL].heap[0]
                    bid_size = self.find_level(inst, BUY, bid).qty
                    ask_size = self.find_level(inst, SELL, ask).qty
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
        return (self.books[inst].sides[BUY].n, self.books[inst].sides[SELL].n)

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
