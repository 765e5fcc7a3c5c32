"""Message bodies (core/wire.py, SPEC §13): events, quotes and rows packed and back,
against an obvious model, and the compiled core's bytes against the reference's."""

from __future__ import annotations

import contextlib
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l3tol1.core import available, load
from l3tol1.core.records import Event, Quote
from l3tol1.core.schemas import Row
from l3tol1.core.wire import (
    EVENT,
    EVENTS_MAGIC,
    QUOTE,
    QUOTES_MAGIC,
    ROW,
    ROWS_MAGIC,
    pack_events,
    pack_quotes,
    pack_rows,
    pack_time,
    partition_of,
    render_time,
    unpack_rows,
)

CORES = ["python", "compiled"] if available() else ["python"]
NAMES = st.sampled_from(["", "ESZ6", "NQZ6", "é", '"a,b"', "x" * 70, "SPY@2"])
CANONICAL = st.builds(
    "{:04d}-{:02d}-{:02d} {:02d}:{:02d}:{:02d}.{:06d} UTC".format,
    *(st.integers(0, top) for top in (9999, 19, 39, 39, 69, 69, 999999)),
)  # some past what 60 bits hold (month 16...): those travel as text
NEAR_CANONICAL = st.text(alphabet="0123456789-: .UTCé", min_size=29, max_size=31)
TIMES = st.one_of(
    st.sampled_from(["2024-01-02 09:30:00.000001 UTC", "2024-01-02 09:30:00 UTC"]),
    CANONICAL,
    NEAR_CANONICAL,
    st.integers(0, 2**63 - 1),
)


@st.composite
def events(draw: st.DrawFn) -> list[Event]:
    """Events in increasing seq order, as the feed hands them on."""
    seq = draw(st.integers(0, 2**64 - 200))
    out = []
    for line in range(draw(st.integers(0, 60))):
        seq += draw(st.integers(1, 3))
        out.append(
            Event(
                seq,
                draw(st.integers(0, 8)),  # every Action, PRINT and FILL included
                draw(NAMES),
                draw(st.sampled_from(["1", "2", "01", "é", "x" * 40, ""])),
                draw(st.integers(0, 2)),
                draw(st.integers(-(2**63), 2**63 - 1)),
                draw(st.integers(0, 2**32 - 1)),
                draw(TIMES),
                line + 1,
                "",
                draw(st.booleans()),
                draw(st.integers(0, 2**63 - 1)),
            )
        )
    return out


@st.composite
def quotes(draw: st.DrawFn) -> list[Quote]:
    price = st.integers(-(2**63), 2**63 - 1)
    size = st.integers(0, 2**40)
    return [
        Quote(draw(TIMES), draw(NAMES), draw(price), draw(price), draw(size), draw(size),
              draw(st.integers(0, 2**64 - 1)))
        for _ in range(draw(st.integers(0, 40)))
    ]  # fmt: skip


def packed_events(core: Any, items: list[Event], partitions: int, last: list[int], size: int
                  ) -> Any:  # fmt: skip
    return load(core).pack_events(load(core).events(items), partitions, last, size)


class TestEvents:
    @settings(max_examples=200, deadline=None)
    @given(events(), st.integers(1, 5), st.data(), st.integers(60, 3000))
    def test_packed_per_partition_and_back(
        self, items: list[Event], partitions: int, data: st.DataObject, max_body: int
    ) -> None:
        """Each partition's bodies hold its events above its last seq, in order; a body is at
        most ``max_body`` unless one event alone is larger; both cores give the same bytes."""
        seqs = [e.seq for e in items] or [0]
        last = data.draw(st.lists(st.sampled_from([-1, *seqs]), min_size=partitions,
                                  max_size=partitions))  # fmt: skip
        packed, skipped = pack_events(items, partitions, last, max_body)
        model: dict[int, list[Event]] = {}
        for e in items:
            p = zlib.crc32(e.instrument.encode()) % partitions
            if e.seq > last[p]:
                model.setdefault(p, []).append(e)
        assert skipped == len(items) - sum(map(len, model.values()))
        got: dict[int, list[Event]] = {}
        for p, body, first, last_seq, count in packed:
            part = load("python").unpack_events(body)
            assert len(part) == count and (part[0].seq, part[-1].seq) == (first, last_seq)
            assert len(body) <= max_body or count == 1
            assert all(partition_of(e.instrument, partitions) == p for e in part)
            got.setdefault(p, []).extend(part)
        assert [p for p, *_ in packed] == sorted(p for p, *_ in packed)
        assert got == model
        for core in CORES[1:]:
            assert packed_events(core, items, partitions, last, max_body) == (packed, skipped)
            for _, body, *_ in packed:
                assert list(load(core).unpack_events(body)) == load("python").unpack_events(body)

    @pytest.mark.parametrize("core", CORES)
    @settings(max_examples=100, deadline=None)
    @given(items=events(), cut=st.integers(0, 10_000))
    def test_a_body_cut_short_is_refused(self, core: str, items: list[Event], cut: int) -> None:
        """A body cut inside an event is a ValueError (quarantined by a worker), never a crash;
        cut between two events it is the events before the cut."""
        if not items:
            return
        ((_, body, *_),), _ = pack_events(items, 1, [-1], 1 << 20)
        cut = cut % len(body)
        bounds = [4]
        for e in items:  # where each event ends: its size packed alone
            ((_, alone, *_),), _ = pack_events([e], 1, [-1], 1 << 20)
            bounds.append(bounds[-1] + len(alone) - 4)
        if cut in bounds:
            assert list(load(core).unpack_events(body[:cut])) == items[: bounds.index(cut)]
        else:
            with pytest.raises(ValueError, match=r"cut short|no L3E2"):
                load(core).unpack_events(body[:cut])

    @pytest.mark.parametrize("core", CORES)
    @given(junk=st.binary(max_size=300))
    def test_junk_is_refused_never_a_crash(self, core: str, junk: bytes) -> None:
        for body in (junk, EVENTS_MAGIC + junk):
            with contextlib.suppress(ValueError):
                load(core).unpack_events(body)

    @pytest.mark.parametrize("core", CORES)
    @pytest.mark.parametrize("where", ["instrument", "order id", "time"])
    def test_a_string_not_utf8_is_refused_every_time(self, core: str, where: str) -> None:
        """A body from elsewhere whose strings are not UTF-8 is refused as the reference does,
        however often it comes (a worker replays a partition after a takeover), and the names
        met after it are unharmed."""
        strings = {"instrument": b"ES", "order id": b"1", "time": b"t"}
        strings[where] = b"\xff\xfe"
        sizes = [len(text) for text in strings.values()]
        head = EVENT.pack(1, 0, 1, 1, -1, 0, 0, 0, 1, *sizes)
        bad = EVENTS_MAGIC + head + b"".join(strings.values())
        cores = load(core)
        for _ in range(3):
            with pytest.raises(ValueError):
                cores.unpack_events(bad)
        ((_, good, *_),), _ = pack_events([Event(2, 0, "NQ", "7", 0, 1, 1, 5, 1, "", True)],
                                          1, [-1], 1 << 20)  # fmt: skip
        assert [e.instrument for e in cores.unpack_events(good)] == ["NQ"]
        bad_quote = QUOTES_MAGIC + QUOTE.pack(1, 2, 3, 4, -1, 5, 2, 2) + b"ES\xff\xfe"
        with pytest.raises(ValueError):
            cores.unpack_quotes(bad_quote)

    @pytest.mark.parametrize("core", CORES)
    @pytest.mark.parametrize(
        ("ts_event", "action", "side", "last"),
        [(0, 9, 0, 1), (0, 0, 3, 1), (0, 0, 0, 2), (-1, 0, 0, 1)],
        ids=["action 9", "side 3", "last 2", "ts_event -1"],
    )
    def test_a_field_out_of_range_is_refused(
        self, core: str, ts_event: int, action: int, side: int, last: int
    ) -> None:
        head = EVENT.pack(1, 0, 1, 1, 5, ts_event, action, side, last, 0, 0, 0)
        with pytest.raises(ValueError, match="out of range"):
            load(core).unpack_events(EVENTS_MAGIC + head)

    @pytest.mark.parametrize("core", CORES)
    def test_the_new_actions_and_side_none_come_back(self, core: str) -> None:
        """PRINT and FILL with side NONE, a ts_event and an undefined price (SPEC §14)."""
        items = [
            Event(1, 7, "ES", "0", 2, 2**63 - 1, 3, 10, 1, "", False, 9),
            Event(2, 8, "ES", "5", 0, 4799 * 10**9, 1, 11, 2, "", True, 2**63 - 1),
        ]
        ((_, body, *_),), _ = pack_events(items, 1, [-1], 1 << 20)
        assert list(load(core).unpack_events(body)) == items


class TestTimes:
    @given(st.one_of(CANONICAL, NEAR_CANONICAL))
    def test_a_time_is_packed_only_when_it_renders_back(self, text: str) -> None:
        packed = pack_time(text)
        if packed is not None:
            assert 0 <= packed < 2**60
            assert render_time(packed) == text

    @pytest.mark.parametrize("core", CORES)
    @given(packed=st.integers(0, 2**60 - 1))
    def test_any_packed_time_renders_alike(self, core: str, packed: int) -> None:
        """Any 60 bits in a body (a canonical time or not) give the reference's text."""
        body = EVENTS_MAGIC + EVENT.pack(1, 0, 1, 1, -2 - packed, 0, 0, 0, 1, 0, 0, 0)
        (event,) = load(core).unpack_events(body)
        assert event.time == render_time(packed)
        assert len(event.time) == 30

    def test_the_common_time_is_packed(self) -> None:
        text = "2024-01-02 09:30:00.000001 UTC"
        ((_, body, *_),), _ = pack_events([Event(1, 0, "", "1", 0, 1, 1, text, 1, "", True)],
                                          1, [-1], 1 << 20)  # fmt: skip
        assert len(body) == 4 + EVENT.size + 1  # the order id only: the time is in the record
        assert load("python").unpack_events(body)[0].time == text


class TestQuotes:
    @settings(max_examples=200, deadline=None)
    @given(quotes(), st.integers(60, 2000))
    def test_packed_and_back(self, items: list[Quote], max_body: int) -> None:
        bodies = pack_quotes(items, max_body)
        assert all(len(b) <= max_body or len(load("python").unpack_quotes(b)) == 1 for b in bodies)
        assert [q for b in bodies for q in load("python").unpack_quotes(b)] == items
        for core in CORES[1:]:
            compiled = load(core)
            assert [q for b in bodies for q in compiled.unpack_quotes(b)] == items
            repacked = [compiled.pack_quotes(compiled.unpack_quotes(b), max_body) for b in bodies]
            assert repacked == [[b] for b in bodies]

    @pytest.mark.parametrize("core", CORES)
    def test_a_quote_cut_short_is_refused(self, core: str) -> None:
        body = pack_quotes([Quote(1, "ESZ6", 1, 2, 3, 4, 5)], 1 << 20)[0]
        assert len(body) == 4 + QUOTE.size + 4
        for cut in range(5, len(body)):
            with pytest.raises(ValueError, match="cut short"):
                load(core).unpack_quotes(body[:cut])
        with pytest.raises(ValueError, match="no L1Q1"):
            load(core).unpack_quotes(b"[1,2]")


I64 = st.integers(-(2**63), 2**63 - 1)
MAYBE = st.one_of(st.none(), I64)


@st.composite
def schema_rows(draw: st.DrawFn, depth: int) -> list[Row]:
    """Rows of a schema of ``depth`` levels, with nulls anywhere a row may have them."""
    return [
        Row(draw(st.integers(0, 2**63 - 1)), draw(st.integers(0, 2**63 - 1)), draw(NAMES),
            draw(st.sampled_from(["", "A", "M", "C", "R", "T", "F", "N"])),
            draw(st.sampled_from(["", "B", "A", "N"])), draw(MAYBE), draw(MAYBE),
            draw(st.integers(0, 2**64 - 1)), draw(st.integers(0, 15)),
            tuple(draw(st.lists(MAYBE, min_size=6 * depth, max_size=6 * depth))))
        for _ in range(draw(st.integers(0, 30)))
    ]  # fmt: skip


class TestRows:
    @settings(max_examples=200, deadline=None)
    @given(st.sampled_from([1, 10]).flatmap(lambda d: st.tuples(st.just(d), schema_rows(d))),
           st.integers(60, 3000))  # fmt: skip
    def test_packed_and_back(self, drawn: tuple[int, list[Row]], max_body: int) -> None:
        """Rows in bodies of at most ``max_body`` bytes (unless one row alone is larger) come
        back equal, nulls included, in order."""
        depth, items = drawn
        bodies = pack_rows(items, max_body)
        assert all(len(b) <= max_body or len(unpack_rows(b)) == 1 for b in bodies)
        assert [r for b in bodies for r in unpack_rows(b, depth)] == items

    def test_a_row_cut_short_is_refused(self) -> None:
        body = pack_rows([Row(1, 2, "ESZ6", "T", "B", 5, None, 7, 4, (1, None, 3, 4, 5, 6))],
                         1 << 20)[0]  # fmt: skip
        assert len(body) == 4 + ROW.size + 1 + 48 + 4
        for cut in range(5, len(body)):
            with pytest.raises(ValueError, match="cut short"):
                unpack_rows(body[:cut])
        with pytest.raises(ValueError, match="no L1R1"):
            unpack_rows(b"L1Q1")

    @pytest.mark.parametrize(
        "change",
        [
            {"action": ord("X")},  # not an action
            {"side": ord("S")},
            {"flags": 16},
            {"nulls": 4},
            {"count": 0},
            {"count": 5},  # not whole levels
            {"ts_recv": -1},
        ],
    )
    def test_a_field_out_of_range_is_refused(self, change: dict[str, int]) -> None:
        fields = {"ts_recv": 1, "ts_event": 1, "price": 0, "size": 0, "seq": 1, "flags": 0,
                  "action": 65, "side": 66, "nulls": 0, "count": 6, "inst": 0}  # fmt: skip
        fields.update(change)
        count = fields["count"]
        body = ROWS_MAGIC + ROW.pack(*fields.values()) + bytes((count + 7) // 8 + 8 * count)
        with pytest.raises(ValueError, match="out of range"):
            unpack_rows(body)

    def test_a_row_of_another_depth_is_refused(self) -> None:
        """A collector of ``mbp-10`` refuses ``mbp-1`` rows (a body from elsewhere)."""
        body = pack_rows([Row(1, 2, "ESZ6", "", "", None, None, 7, 0, (None,) * 6)], 1 << 20)[0]
        assert len(unpack_rows(body, 1)) == 1
        with pytest.raises(ValueError, match="out of range"):
            unpack_rows(body, 10)

    @given(junk=st.binary(max_size=300))
    def test_junk_is_refused_never_a_crash(self, junk: bytes) -> None:
        for body in (junk, ROWS_MAGIC + junk):
            with contextlib.suppress(ValueError):
                unpack_rows(body)

    def test_an_instrument_not_utf8_is_refused(self) -> None:
        body = ROWS_MAGIC + ROW.pack(1, 1, 0, 0, 1, 0, 65, 66, 0, 6, 2) + bytes(49) + b"\xff\xfe"
        with pytest.raises(ValueError):
            unpack_rows(body)
