# cython: language_level=3, cdivision=True
"""The compiled core's records and memory: the table of instrument names, and the batches of
events and quotes that travel between the stages (C arrays of fixed-size records, declared in
records.pxd with the inline helpers every module shares)."""

from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcmp, memcpy, memset

from l3tol1.core.cy.constants cimport NS_PER_DAY

from l3tol1.core.l1 import _csv_field  # the reference's rule, used once per new name
from l3tol1.core.records import Event, Quote
from l3tol1.core.schemas import Row


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


cdef class InstrumentTable:
    """Every instrument name met, interned: an event or quote holds its index. Index 0 is ""
    (the instrument of a feed without an instrument column)."""

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
        field = _csv_field(name).encode()
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


# -- events ----------------------------------------------------------------------------------------

cdef class EventBatch:
    """Events in a C array; their strings point into the bytes in ``keep`` or the arena."""

    def __cinit__(self, InstrumentTable table not None, events=()):
        self.table = table
        self.keep = []
        self.capacity = 0
        self.n = 0
        self.ev = NULL
        memset(&self.arena, 0, sizeof(Arena))

    def __init__(self, InstrumentTable table not None, events=()):
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

    cdef void reserve(self, Py_ssize_t count) except *:
        """Room for ``count`` more events at once (a parser that knows how many may come:
        the array is not grown, and copied, step by step)."""
        if self.n + count > self.capacity:
            self.capacity = self.n + count
            self.ev = <Ev*>grow(self.ev, self.capacity * sizeof(Ev))

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
        e.ts_event = event.ts_event
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
        e.qty, time, e.line, text_of(e.raw, e.raw_size), e.last != 0, e.ts_event,
    )


# -- quotes ----------------------------------------------------------------------------------------

cdef class QuoteBatch:
    """L1 quotes in a C array; their times point into the events' batches, kept in ``keep``."""

    def __cinit__(self, InstrumentTable table not None):
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

    def rename(self, name, DayNames memo=None):
        """Name each quote by ``name(instrument, time)``: Databento's rows by their symbol on
        their day, asked once per instrument and day while ``memo`` is passed back (a name,
        once given, is the book's for the day). Returns the memo to pass next time."""
        cdef Py_ssize_t i
        cdef Qt* q
        cdef int64_t day, last_day = -1
        cdef int32_t last_inst = -1, last_name = 0
        if memo is None or memo.table is not self.table:
            memo = DayNames(self.table)
        for i in range(self.n):
            q = &self.q[i]
            day = q.time_ns // NS_PER_DAY
            if q.inst != last_inst or day != last_day:  # runs of one book's quotes are common
                last_inst, last_day = q.inst, day
                last_name = memo.name(q.inst, day, q.time_ns, name)
            q.inst = last_name
        return memo


cdef class U64Table:
    """Nonzero uint64 keys to int64 values, by open addressing (records.pxd says what for)."""

    def __cinit__(self):
        self.capacity = 64
        self.count = 0
        self.keys = <uint64_t*>calloc(self.capacity, sizeof(uint64_t))
        self.values = <int64_t*>calloc(self.capacity, sizeof(int64_t))
        if self.keys == NULL or self.values == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.keys)
        free(self.values)

    cdef Py_ssize_t slot(self, uint64_t key) noexcept:
        """The slot of ``key``, or of the empty slot where it would go."""
        cdef Py_ssize_t mask = self.capacity - 1
        cdef Py_ssize_t i = <Py_ssize_t>(mix(key) & <uint64_t>mask)
        while self.keys[i] != key and self.keys[i] != 0:
            i = (i + 1) & mask
        return i

    cdef void put(self, uint64_t key, int64_t value) except *:
        cdef Py_ssize_t i = self.slot(key)
        if self.keys[i] == 0:
            if (self.count + 1) * 2 > self.capacity:
                self._grow()
                i = self.slot(key)
            self.keys[i] = key
            self.count += 1
        self.values[i] = value

    cdef void _grow(self) except *:
        cdef uint64_t* old_keys = self.keys
        cdef int64_t* old_values = self.values
        cdef Py_ssize_t old_capacity = self.capacity, i, j
        self.keys = <uint64_t*>calloc(self.capacity * 2, sizeof(uint64_t))
        self.values = <int64_t*>calloc(self.capacity * 2, sizeof(int64_t))
        if self.keys == NULL or self.values == NULL:
            free(self.keys)
            free(self.values)
            self.keys, self.values = old_keys, old_values
            raise MemoryError()
        self.capacity *= 2
        for i in range(old_capacity):
            if old_keys[i]:
                j = self.slot(old_keys[i])
                self.keys[j] = old_keys[i]
                self.values[j] = old_values[i]
        free(old_keys)
        free(old_values)


cdef class DayNames:
    """The name each book's rows got on each day, by instrument index (`QuoteBatch.rename`'s
    memo): (the book key's index << 32 | day) + 1 to the name's index, so that a quote is
    renamed without a Python object."""

    cdef InstrumentTable table
    cdef U64Table names

    def __cinit__(self, InstrumentTable table not None):
        self.table = table
        self.names = U64Table()

    cdef int32_t name(self, int32_t inst, int64_t day, int64_t time_ns, object name) except -1:
        """The index of the name of book ``inst``'s rows on ``day``, asked of ``name`` the
        first time."""
        cdef uint64_t key = ((<uint64_t>inst << 32) | <uint64_t>day) + 1
        cdef Py_ssize_t i = self.names.slot(key)
        cdef int32_t index
        if self.names.keys[i] == key:
            return <int32_t>self.names.values[i]
        index = self.table.index(name(self.table.names[inst], time_ns))
        self.names.put(key, index)
        return index


# -- rows of the output schemas (SPEC §14) ---------------------------------------------------------

cdef class RowBatch:
    """A schema's rows in a C array (`Core.rows`); iterated, they are core/schemas.py's `Row`s."""

    def __cinit__(self, InstrumentTable table not None):
        self.table = table
        self.r = NULL
        self.levels = NULL
        self.n = self.capacity = 0
        self.depth = 0

    def __dealloc__(self):
        free(self.r)
        free(self.levels)

    def __len__(self):
        return self.n

    def __iter__(self):
        cdef Py_ssize_t i
        for i in range(self.n):
            yield self.row(i)

    def __getitem__(self, Py_ssize_t i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.row(i)

    cdef object row(self, Py_ssize_t i):
        cdef RowRec* r = &self.r[i]
        return Row(
            r.ts_recv, r.ts_event, self.table.names[r.inst], LETTERS[r.action], LETTERS[r.side],
            r.price if r.has & ROW_HAS_PRICE else None, r.size if r.has & ROW_HAS_SIZE else None,
            r.seq, r.flags, levels_of(self.levels + i * 6 * self.depth, self.depth, r.bids, r.asks),
        )

    cdef RowRec* add(self, int depth) except NULL:
        if depth != self.depth:
            if self.n:
                raise ValueError(f"rows of {depth} levels added to rows of {self.depth}")
            self.depth = depth
        if self.n == self.capacity:
            self.capacity = self.capacity * 2 + 256
            self.r = <RowRec*>grow(self.r, self.capacity * sizeof(RowRec))
            self.levels = <int64_t*>grow(self.levels, self.capacity * 6 * depth * sizeof(int64_t))
        self.n += 1
        return &self.r[self.n - 1]


# A row's action and side letters by their byte (0: "").
LETTERS = ("",) + tuple(chr(i) for i in range(1, 128))


cdef object levels_of(const int64_t* levels, int depth, int bids, int asks):
    """Levels as `Row.levels` holds them: None where a side has fewer."""
    cdef int i
    cdef const int64_t* at
    out = []
    for i in range(depth):
        at = levels + 6 * i
        if i < bids:
            if i < asks:
                out += (at[0], at[1], at[2], at[3], at[4], at[5])
            else:
                out += (at[0], None, at[2], None, at[4], None)
        elif i < asks:
            out += (None, at[1], None, at[3], None, at[5])
        else:
            out += (None, None, None, None, None, None)
    return tuple(out)
