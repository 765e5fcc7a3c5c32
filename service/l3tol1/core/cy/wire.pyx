# cython: language_level=3, cdivision=True
"""The compiled core's message bodies (SPEC §13): the wire format of core/wire.py, packed from
and unpacked into the C arrays, with no Python object per record. The record layouts are
declared in constants.pxd (and checked against core/wire.py's at import)."""

from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free
from libc.string cimport memcmp, memcpy
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8

from l3tol1.core.cy.constants cimport (
    EVENTS_MAGIC, FILL, NS_PER_DAY, PACKED_TIMES, QUOTES_MAGIC, SIDE_NONE, WireEv, WireQt,
)
from l3tol1.core.cy.records cimport (
    Arena, Ev, EventBatch, InstrumentTable, Qt, QuoteBatch, arena_put, grow, pack_time,
    render_time,
)


# -- message bodies (the wire format of core/wire.py, from and into the C arrays) ------------------

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
    return field != -1 and field > -2 - PACKED_TIMES


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
    w.ts_event = e.ts_event
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


def pack_events(EventBatch events not None, int partitions, last_seq, Py_ssize_t max_body,
                *, bint by_line=False):
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
                memcpy(out, EVENTS_MAGIC, 4)
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


def instrument_days(EventBatch events not None):
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


def unpack_events(InstrumentTable table not None, bytes body not None):
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
    check_mark(body, EVENTS_MAGIC, "event")
    names.name, names.size, names.inst = NULL, 0, 0
    batch.keep.append(body)
    while at < end:
        if end - at < <Py_ssize_t>sizeof(WireEv):
            raise ValueError(f"event {batch.n} is cut short")
        memcpy(&w, base + at, sizeof(WireEv))
        at += sizeof(WireEv)
        if <uint64_t>w.inst_size + w.oid_size + w.time_size > <uint64_t>(end - at):
            raise ValueError(f"event {batch.n} is cut short")
        if (w.action > FILL or w.side > SIDE_NONE or w.last > 1 or w.ts_event < 0
                or not time_ok(w.time_ns, w.time_size)):
            raise ValueError(f"event {batch.n} has a field out of range")
        inst = intern_cached(table, &names, base + at, w.inst_size)
        at += w.inst_size
        e = batch.add()
        e.seq = w.seq
        e.price = w.price
        e.qty = w.qty
        e.line = w.line
        e.time_ns = w.time_ns if w.time_ns >= 0 else -1
        e.ts_event = w.ts_event
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


def pack_quotes(QuoteBatch quotes not None, Py_ssize_t max_body):
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
        memcpy(out, QUOTES_MAGIC, 4)
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


def unpack_quotes(InstrumentTable table not None, bytes body not None):
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
    check_mark(body, QUOTES_MAGIC, "quote")
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
