# cython: language_level=3, cdivision=True
"""The compiled core's resequencer (SPEC §5): the rules of core/feed.py, over whole batches."""

from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memset

from l3tol1.core.cy.constants cimport GAP_MEMORY
from l3tol1.core.cy.records cimport (
    Arena, Ev, EventBatch, InstrumentTable, arena_free, arena_put, event_of, grow, mix, pack_time,
    render_time, text_of,
)

from l3tol1.core.feed import FeedState
from l3tol1.core.records import Event, Reason, Reject


# -- the feed (SPEC §5) ----------------------------------------------------------------------------

# A waiting event keeps its `Ev` as it arrived: its strings (order id, time) stay where the parser
# put them, in the input batch, which the feed holds ("pins") while any of its events waits, and
# hands on with the events it releases (`ready.keep`). Nothing is copied on the common path, where
# a disorder window spans one chunk boundary. At most PIN_LIMIT batches are held: pinning another
# first copies the strings of the oldest one's waiting events (`own`), so that memory stays
# bounded whatever the input (a far-future seq per chunk, a gap that never fills).

cdef enum:
    PIN_LIMIT = 4
    # Rec.flags
    IN_USE = 1
    OWNED = 2  # its strings are its own (below), not its pinned batch's
    OID_PACKED = 4  # `oid_value` is the value of a decimal order id without leading zeros
    TIME_PACKED = 8  # `time_value` holds the fields of a 30-byte CSV time
    HAS_BLOCK = 16  # the strings not packed are copied into one block, at `ev.raw`


cdef struct Rec:
    # A waiting event: its `Ev` as it arrived, but for the raw line (a waiting event is released,
    # never rejected), whose pointer holds the block of its own strings once it has any. An
    # event of a batch let go keeps its order id and time packed into integers where they are
    # the usual ones (about 120 bytes a waiting event in all), written out again on release.
    Ev ev
    uint64_t oid_value  # when free: the next free record
    uint64_t time_value
    uint32_t pin  # the number of the pinned batch that holds its strings, mod 2^32
    uint8_t flags


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
    that no tombstone ever lengthens a search), and ordered by a heap of their seqs; their
    strings stay in the input batches, pinned (`pins`) while any of their events waits.
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
    cdef list pins  # the pinned input batches, oldest first
    cdef int64_t pin_base  # the number of pins[0]; pins are numbered in pinning order
    cdef Py_ssize_t pin_waiting[PIN_LIMIT]  # waiting events per pin
    cdef int64_t current_pin  # the pin of the batch being pushed (< pin_base: not pinned)

    def __cinit__(self):
        self.capacity = 1024
        self.index = <uint32_t*>calloc(self.capacity, sizeof(uint32_t))
        if self.index == NULL:
            raise MemoryError()
        self.free_head = -1
        self.pins = []
        self.current_pin = -1

    def __init__(self, InstrumentTable table not None, *, start_seq=None, max_pending=100_000,
                 gap_timeout=None):
        self.table = table
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
                if self.pool[i].flags & HAS_BLOCK:
                    free(<void*>self.pool[i].ev.raw)
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
            if self.pool[k - 1].ev.seq == seq:
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
            home = <Py_ssize_t>(mix(self.pool[self.index[j] - 1].ev.seq) & mask)
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
                self.index_add(self.pool[old[i] - 1].ev.seq, old[i] - 1)
        free(old)

    # The records, and the input batches that hold their strings.

    cdef int64_t pin(self, EventBatch batch) except -1:
        """Hold ``batch`` while events of it wait; its pin's number. Past PIN_LIMIT, the
        oldest pin's waiting events get copies of their strings, and it is let go."""
        cdef Py_ssize_t r, k
        cdef Rec* rec
        if len(self.pins) == PIN_LIMIT:
            for r in range(self.pool_end):
                rec = &self.pool[r]
                if rec.flags == IN_USE and rec.pin == <uint32_t>self.pin_base:
                    self.own(rec)
            self.pin_waiting[0] = 0
            self.unpin_done()
        k = len(self.pins)
        self.pins.append(batch)
        self.pin_waiting[k] = 0
        return self.pin_base + k

    cdef inline Py_ssize_t pin_offset(self, Rec* rec) noexcept:
        """Where the pin of ``rec`` is in `pins` (pin numbers wrap at 2^32; at most
        PIN_LIMIT are held, so the difference is exact)."""
        return <Py_ssize_t>(<uint32_t>(rec.pin - <uint32_t>self.pin_base))

    cdef void unpin_done(self) except *:
        """Let go of the oldest pins that no waiting event needs any more."""
        cdef Py_ssize_t k, done = 0, held = len(self.pins)
        while done < held and self.pin_waiting[done] == 0:
            done += 1
        if done:
            del self.pins[:done]
            for k in range(held - done):
                self.pin_waiting[k] = self.pin_waiting[k + done]
            self.pin_base += done

    cdef void own(self, Rec* rec) except *:
        """Give a waiting event its own strings, out of its pinned batch: packed where they
        are the usual ones, else copied into one block."""
        cdef Py_ssize_t oid_size = 0, time_size = 0
        cdef char* block
        rec.flags |= OWNED
        if pack_oid(rec.ev.oid, rec.ev.oid_size, &rec.oid_value):
            rec.flags |= OID_PACKED
        else:
            oid_size = rec.ev.oid_size
        if rec.ev.time_ns < 0:
            if pack_time(rec.ev.time, rec.ev.time_size, &rec.time_value):
                rec.flags |= TIME_PACKED
            else:
                time_size = rec.ev.time_size
        if oid_size + time_size:
            block = <char*>malloc(oid_size + time_size)
            if block == NULL:
                raise MemoryError()
            memcpy(block, rec.ev.oid, oid_size)
            memcpy(block + oid_size, rec.ev.time, time_size)
            rec.flags |= HAS_BLOCK
            rec.ev.raw = block
            if oid_size:
                rec.ev.oid = block
            if time_size:
                rec.ev.time = block + oid_size

    cdef void put(self, Ev* e, EventBatch batch) except *:
        """Make event ``e`` (of ``batch``) wait, its strings where they are."""
        cdef Py_ssize_t r
        cdef Rec* rec
        if (self.used + 1) * 2 > self.capacity:
            self.resize(self.capacity * 2)
        if self.current_pin < self.pin_base:
            self.current_pin = self.pin(batch)
        if self.free_head >= 0:
            r = self.free_head
            self.free_head = <int64_t>self.pool[r].oid_value
        else:
            if self.pool_end == self.pool_cap:
                self.pool_cap = self.pool_cap * 2 + 1024
                self.pool = <Rec*>grow(self.pool, self.pool_cap * sizeof(Rec))
            r = self.pool_end
            self.pool_end += 1
        rec = &self.pool[r]
        rec.ev = e[0]
        rec.ev.raw = ""
        rec.ev.raw_size = 0
        rec.pin = <uint32_t>self.current_pin
        rec.flags = IN_USE
        self.pin_waiting[self.current_pin - self.pin_base] += 1
        self.index_add(e.seq, <uint32_t>r)
        self.used += 1
        self.heap_push(e.seq)

    cdef void release(self, Py_ssize_t slot, EventBatch ready) except *:
        """Move the waiting event in index slot ``slot`` to ``ready``: its strings stay in its
        pinned batch (which ``ready`` keeps: `hand_pins`), or are written into ready's arena."""
        cdef Py_ssize_t r = self.index[slot] - 1, k
        cdef Rec* rec = &self.pool[r]
        cdef Ev* e = ready.add()
        e[0] = rec.ev
        if not rec.flags & OWNED:
            k = self.pin_offset(rec)
            self.pin_waiting[k] -= 1
            if k == 0 and self.pin_waiting[0] == 0:
                self.unpin_done()
        else:
            self.write_strings(rec, e, &ready.arena)
            e.raw = ""
            if rec.flags & HAS_BLOCK:
                free(<void*>rec.ev.raw)
        rec.flags = 0
        rec.oid_value = <uint64_t>self.free_head
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

    cdef void write_strings(self, Rec* rec, Ev* e, Arena* arena) except *:
        """The strings of an event that owns them, into ``arena``, for ``e`` to point to."""
        cdef char buffer[32]
        cdef int n
        if rec.flags & OID_PACKED:
            n = render_oid(rec.oid_value, buffer)
            e.oid = arena_put(arena, buffer, n)
        else:
            e.oid = arena_put(arena, rec.ev.oid, rec.ev.oid_size)
        if rec.ev.time_ns < 0:
            if rec.flags & TIME_PACKED:
                render_time(rec.time_value, buffer)
                e.time = arena_put(arena, buffer, 30)
            else:
                e.time = arena_put(arena, rec.ev.time, rec.ev.time_size)
        else:  # a time in ns has no text (the batch that held it may be gone)
            e.time = ""
            e.time_size = 0

    cdef inline void hand_pins(self, EventBatch ready) except *:
        """``ready`` keeps every pinned batch: the events it gets may point into any of them."""
        if self.pins:
            ready.keep.extend(self.pins)

    cdef object event_of_record(self, Rec* rec):
        cdef Ev e = rec.ev
        cdef Arena arena
        if not rec.flags & OWNED:
            return event_of(&e, self.table)
        memset(&arena, 0, sizeof(Arena))
        try:
            self.write_strings(rec, &e, &arena)
            e.raw = ""
            return event_of(&e, self.table)
        finally:
            arena_free(&arena)

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

    def push(self, EventBatch events not None, double now, EventBatch ready not None,
             list rejects):
        """Take a batch of events in arrival order; append to ``ready`` those that can go on,
        in seq order, and late and duplicate rows to ``rejects``."""
        cdef Py_ssize_t i, k
        cdef Ev* e
        cdef Ev* out
        cdef uint64_t seq
        self.table = events.table
        self.received += events.n
        ready.keep.append(events)  # events released as they come point into its strings
        ready.reserve(events.n)  # about as many go on as come: the array grows once
        self.hand_pins(ready)
        self.current_pin = -1  # the batch is pinned by its first event that waits
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
                self.put(e, events)
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

    def expire(self, double now, EventBatch ready not None):
        """Skip every gap (or close the start-up window) whose timeout has passed by ``now``."""
        self.hand_pins(ready)
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

    def finish(self, EventBatch ready not None):
        """End of input: release everything, skipping the gaps."""
        self.hand_pins(ready)
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
            if self.pool[i].flags & IN_USE:
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
        self.current_pin = -1
        for i in range(batch.n):
            self.put(&batch.ev[i], batch)
            if self.timed:
                self.arrive(now, batch.ev[i].seq)
        self.gap_starts = [first for first, _ in state.gaps]
        self.gap_ends = [last for _, last in state.gaps]
        self.received = state.received
        self.late = state.late
        self.duplicate = state.duplicate
        self.gaps_skipped = state.gaps_skipped
        self.seqs_lost = state.seqs_lost
