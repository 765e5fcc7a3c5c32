"""What an l3tol1 message is (SPEC §13, `l3tol1.jetstream.wire`): the headers the roles write, and
the whole-message checks every reader makes before acting on a header. Pure: no server."""

from __future__ import annotations

from typing import Any

import pytest
import zstandard

from l3tol1.core import load
from l3tol1.core.records import Event, Quote
from l3tol1.core.wire import EVENTS_MAGIC
from l3tol1.jetstream.marks import CLOCK, GAP, Mark
from l3tol1.jetstream.wire import (
    COVERS,
    ENCODING,
    END,
    LAYOUT,
    MARKS,
    MAX_BODY,
    PREV,
    ROW_NAMES,
    ZSTD,
    Malformed,
    Names,
    encode_body,
    l1_headers,
    l3_headers,
    partition_of_subject,
    read_l1,
    read_l3,
    read_state_part,
    state_headers,
)

T = "2021-08-03 01:00:00.100000 UTC"
EVENTS = [Event(10 + i, 0, "ESZ6", f"o{i}", 0, 100 + i, 5, T, 2 + i, "", True) for i in range(3)]
QUOTES = [Quote(T, "ESZ6", 100, 101, 5, 6, 10)]


def events_body(core: Any) -> bytes:
    ((_, body, *_),), _ = core.pack_events(core.events(EVENTS), 1, [-1], 1 << 20)
    return bytes(body)


def quotes_body(core: Any) -> bytes:
    quotes = core.quotes()
    if isinstance(quotes, list):
        quotes.extend(QUOTES)
        (body,) = core.pack_quotes(quotes, 1 << 20)
    else:  # the compiled core's container is filled by its books: pack the reference's bytes
        (body,) = load("python").pack_quotes(QUOTES, 1 << 20)
    return bytes(body)


def repeated_events(core: Any, times: int) -> bytes:
    """A body of `EVENTS` ``times`` over (records follow records after the magic)."""
    records = events_body(core)[len(EVENTS_MAGIC) :]
    return EVENTS_MAGIC + records * times


def l3(core: Any, headers: dict[str, str], body: bytes, seq: int = 50) -> Any:
    return read_l3(headers, body, seq=seq, partitions=4, unpack=core.unpack_events)


class TestL3Messages:
    def test_what_the_publisher_writes_is_read_back(self, core: Any) -> None:
        """A batch of events with the publisher's headers (and NATS's) is an l3tol1 message."""
        names = {("ESZ6", 18842): "ES"}
        headers = l3_headers(last_seq=12, layout="1,0", prev=7, row_names=names)
        headers.update({"Nats-Msg-Id": "0:10", "Nats-Expected-Last-Subject-Sequence": "7"})
        message = l3(core, headers, events_body(core))
        assert (message.prev, message.last_seq, message.end) == (7, 12, False)
        assert message.layout == "1,0"
        assert message.row_names == names
        assert [e.seq for e in message.events] == [10, 11, 12]

    def test_an_end_mark_is_exactly_the_publishers(self, core: Any) -> None:
        """An end mark carries the partition count and no body; any other value is foreign."""
        end = l3_headers(last_seq=-1, layout="0,0", prev=0, end_of=4)
        assert l3(core, end, b"").end
        for value in ("banana", "1", "04", "4 "):
            with pytest.raises(Malformed, match=END):
                l3(core, {**end, END: value}, b"")
        with pytest.raises(Malformed, match="body"):
            l3(core, end, events_body(core))

    def test_marks_come_with_events_or_alone(self, core: Any) -> None:
        """The publisher's marks travel with events, or alone (a partition with no event to
        send); ``L3tol1-Last-Seq`` covers them."""
        marks = [Mark(11, GAP), Mark(11, CLOCK, 1627952401), Mark(13, GAP)]
        headers = l3_headers(last_seq=13, layout="1,0", prev=7, marks=marks)
        message = l3(core, headers, events_body(core))
        assert message.marks == marks and len(message.events) == 3
        alone = l3(core, headers, b"")
        assert alone.marks == marks and list(alone.events) == []
        assert (
            l3(core, l3_headers(last_seq=12, layout="1,0", prev=7), events_body(core)).marks == []
        )

    @pytest.mark.parametrize("text", ["", "11x", "12g,-1g", "11c", "14g", "11g,3g"])
    def test_marks_that_are_not_the_publishers_make_it_foreign(self, core: Any, text: str) -> None:
        """Marks the publisher does not write, or past the message's last place, are foreign,
        as are marks on an end mark."""
        headers = {**l3_headers(last_seq=13, layout="1,0", prev=7), MARKS: text}
        with pytest.raises(Malformed, match="mark"):
            l3(core, headers, events_body(core))
        end = {**l3_headers(last_seq=13, layout="1,0", prev=7, end_of=4), MARKS: "11g"}
        with pytest.raises(Malformed, match="body"):
            l3(core, end, b"")

    @pytest.mark.parametrize("prev", ["50", "51", "99999", "-1", "+3", " 3", "03", "3.0", "٣", ""])
    def test_prev_is_a_plain_integer_before_the_message(self, core: Any, prev: str) -> None:
        """``L3tol1-Prev`` names a stream seq before the message's own (50), written plainly."""
        headers = {**l3_headers(last_seq=12, layout="0,0", prev=0), PREV: prev}
        with pytest.raises(Malformed, match=PREV):
            l3(core, headers, events_body(core))

    @pytest.mark.parametrize(
        "change",
        [
            {LAYOUT: "2,0"},
            {LAYOUT: "1, 0"},
            {"L3tol1-Last-Seq": "twelve"},
            {"L3tol1-Last-Seq": str(2**64)},
            {COVERS: "3"},  # an L1 header on an L3 message
            {"L3tol1-Whatever": "1"},
            {ROW_NAMES: "not json"},
            {ROW_NAMES: '[["ESZ6", "day", "ES"]]'},
        ],
    )
    def test_any_header_that_is_not_ours_makes_it_foreign(
        self, core: Any, change: dict[str, str]
    ) -> None:
        headers = {**l3_headers(last_seq=12, layout="0,0", prev=0), **change}
        with pytest.raises(Malformed):
            l3(core, headers, events_body(core))

    def test_missing_headers_make_it_foreign(self, core: Any) -> None:
        body = events_body(core)
        for name in ("L3tol1-Last-Seq", LAYOUT, PREV):
            headers = l3_headers(last_seq=12, layout="0,0", prev=0)
            del headers[name]
            with pytest.raises(Malformed, match=name):
                l3(core, headers, body)
        with pytest.raises(Malformed):
            l3(core, {}, body)

    @pytest.mark.parametrize("body", [b"", b"L3E1", b"\x00junk{", b"L3E1" + b"\x01" * 30])
    def test_a_body_that_is_not_events_makes_it_foreign(self, core: Any, body: bytes) -> None:
        with pytest.raises(Malformed):
            l3(core, l3_headers(last_seq=12, layout="0,0", prev=0), body)


class TestCompressedBodies:
    def test_a_zstd_body_reads_as_the_packed_one(self, core: Any) -> None:
        """The publisher's zstd body (said by its header) holds the events of the plain one;
        a plain body, as every message before compression had, still reads."""
        plain = repeated_events(core, 20)
        body, encoding = encode_body(plain, 1)
        assert encoding == ZSTD and len(body) < len(plain)
        headers = l3_headers(last_seq=12, layout="1,0", prev=7, encoding=encoding)
        assert headers[ENCODING] == ZSTD
        message = l3(core, headers, body)
        assert [e.seq for e in message.events] == [10, 11, 12] * 20
        old = l3(core, l3_headers(last_seq=12, layout="1,0", prev=7), plain)
        assert list(old.events) == list(message.events)

    def test_what_zstd_does_not_shrink_travels_as_it_is(self) -> None:
        assert encode_body(b"", 1) == (b"", None)
        assert encode_body(b"L3E1\x01", 1) == (b"L3E1\x01", None)

    @pytest.mark.parametrize(
        "body",
        [
            b"",  # marks alone are never compressed
            b"L3E1 plain bytes said to be zstd",
            zstandard.ZstdCompressor().compress(EVENTS_MAGIC + b"\x00" * 100)[:-3],  # cut short
            zstandard.ZstdCompressor(write_content_size=False).compress(EVENTS_MAGIC * 1000),
            zstandard.ZstdCompressor().compress(b"\x00" * (MAX_BODY + 1)),  # a bomb, say
            zstandard.ZstdCompressor().compress(b"not events at all, but zstd"),
        ],
    )
    def test_a_body_zstd_does_not_make_events_of_is_foreign(self, core: Any, body: bytes) -> None:
        headers = l3_headers(last_seq=12, layout="0,0", prev=0, encoding=ZSTD)
        with pytest.raises(Malformed):
            l3(core, headers, body)

    def test_another_encoding_or_an_encoded_end_mark_is_foreign(self, core: Any) -> None:
        body, _ = encode_body(repeated_events(core, 20), 1)
        headers = l3_headers(last_seq=12, layout="0,0", prev=0, encoding="gzip")
        with pytest.raises(Malformed, match=ENCODING):
            l3(core, headers, body)
        end = l3_headers(last_seq=12, layout="0,0", prev=0, end_of=4, encoding=ZSTD)
        with pytest.raises(Malformed, match="body"):
            l3(core, end, b"")


class TestL1Messages:
    def test_what_a_worker_writes_is_read_back(self, core: Any) -> None:
        headers = {**l1_headers(layout="1,0", covers=9), "Nats-Batch-Id": "x"}
        message = read_l1(headers, quotes_body(core), unpack=core.unpack_quotes)
        assert (message.covers, message.layout, message.end) == (9, "1,0", False)
        assert len(message.quotes) == 1
        books_only = read_l1(l1_headers(layout="1,0", covers=9), b"", unpack=core.unpack_quotes)
        assert books_only.quotes is None and not books_only.end
        end = read_l1(l1_headers(layout="0,0", covers=9, end=True), b"", unpack=core.unpack_quotes)
        assert end.end

    @pytest.mark.parametrize(
        "change",
        [{END: "banana"}, {END: "4"}, {COVERS: "0"}, {COVERS: "x"}, {LAYOUT: ""}, {PREV: "1"}],
    )
    def test_anything_else_is_foreign(self, core: Any, change: dict[str, str]) -> None:
        headers = {**l1_headers(layout="1,0", covers=9), **change}
        with pytest.raises(Malformed):
            read_l1(headers, b"", unpack=core.unpack_quotes)

    def test_a_body_that_is_not_rows_is_foreign(self, core: Any) -> None:
        headers = l1_headers(layout="1,0", covers=9)
        for body in (b"L1Q1", b"junk", b"L1Q1\x00\x01"):
            with pytest.raises(Malformed):
                read_l1(headers, body, unpack=core.unpack_quotes)
        with pytest.raises(Malformed, match="body"):
            read_l1({**headers, END: "1"}, quotes_body(core), unpack=core.unpack_quotes)


class TestStateAndSubjects:
    def test_state_parts(self) -> None:
        assert read_state_part(state_headers(2, 3)) == (2, 3)
        for value in ("0/1", "3/2", "1/", "a/b", "1/2/3", "01/2"):
            with pytest.raises(Malformed):
                read_state_part({"L3tol1-State-Part": value})
        with pytest.raises(Malformed):
            read_state_part({LAYOUT: "0,0", "L3tol1-State-Part": "1/1"})

    def test_a_subject_is_a_partitions_only_with_a_partition_number_below_the_count(
        self,
    ) -> None:
        names = Names("l3tol1", "default")
        assert partition_of_subject("l3tol1.l1.default.3", names.l1, 4) == 3
        for subject in (
            "l3tol1.l1.default.4",
            "l3tol1.l1.default.03",
            "l3tol1.l1.default.x",
            "l3tol1.l1.other.3",
            "l3tol1.l3.default.3",
            "l3tol1.l1.default.-1",
        ):
            assert partition_of_subject(subject, names.l1, 4) is None, subject


class TestWorkerState:
    def test_books_of_a_schema_and_row_names_come_back(self) -> None:
        """A worker's state of a schema of rows: the Depths as they were (the same rows
        follow), the names of Databento's rows; another schema's state is not this feed's."""
        from l3tol1.core.schemas import SCHEMAS, Depths
        from l3tol1.jetstream.state import decode_state, encode_state

        depths = Depths(SCHEMAS["bbo-1s"])
        depths.apply(EVENTS[:2], [], [])
        names = {("1:7", 19000): "ESH4"}
        state = decode_state(encode_state(depths.snapshot(), 9, "1,0", False, names), "bbo-1s")
        assert (state["applied"], state["layout"], state["ended"]) == (9, "1,0", False)
        assert state["row_names"] == names
        again = Depths(SCHEMAS["bbo-1s"])
        again.restore(state["books"])
        rows: list[Any] = []
        expected: list[Any] = []
        for d, out in ((depths, expected), (again, rows)):
            d.apply(EVENTS[2:], out, [])
            d.finish(out)
        assert rows == expected and rows
        with pytest.raises(Malformed, match="schema"):
            decode_state(encode_state(depths.snapshot(), 9, "1,0", False), "mbp-1")
        with pytest.raises(Malformed):
            decode_state(b"\x28\xb5\x2f\xfd junk", "bbo-1s")
