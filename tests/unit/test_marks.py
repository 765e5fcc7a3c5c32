"""The publisher's marks (jetstream/marks.py, SPEC §13-14): a feed split into partitions, each
applied with the marks of the whole feed, gives per instrument exactly the rows of the whole
feed applied at once (the file job), for every schema of rows; and the header text."""

from __future__ import annotations

from collections import defaultdict
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l3tol1.core.records import Action, Event
from l3tol1.core.schemas import SCHEMAS, Depths, Row
from l3tol1.core.wire import partition_of
from l3tol1.jetstream.marks import (
    CLOCK,
    GAP,
    Mark,
    MarkMaker,
    apply_marked,
    decode_marks,
    encode_marks,
)

ROW_SCHEMAS = [name for name, schema in SCHEMAS.items() if schema.rows]
NAMES = ["A", "B", "C", "D", "E"]
BASE = 1627952401  # 2021-08-03 01:00:01 UTC


def time_text(us: int) -> str:
    from datetime import UTC, datetime

    second = datetime.fromtimestamp(BASE + us // 1_000_000, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{second}.{us % 1_000_000:06d} UTC"


@st.composite
def feeds(draw: st.DrawFn) -> tuple[list[Event], set[int]]:
    """A feed in seq order over a few instruments, whose times jump, and go back now and then
    (each instrument has a clock of its own, as in the generated feeds); and the seqs before
    which a gap was declared."""
    clocks = dict.fromkeys(NAMES, 0)
    events = []
    for i in range(draw(st.integers(0, 120))):
        name = draw(st.sampled_from(NAMES))
        clocks[name] += draw(st.sampled_from([0, 1, 300_000, 700_000, 2_500_000]))
        action = draw(st.sampled_from([Action.ADD, Action.ADD, Action.UPDATE, Action.DELETE,
                                       Action.TRADE]))  # fmt: skip
        events.append(
            Event(1000 + i, int(action), name, str(draw(st.integers(1, 6))),
                  draw(st.integers(0, 1)), draw(st.integers(1, 5)) * 10**9,
                  draw(st.integers(1, 9)), time_text(clocks[name]), i + 1, "", True)
        )  # fmt: skip
    gaps = {e.seq for e in events if draw(st.integers(0, 9)) == 0}
    return events, gaps


def per_instrument(rows: list[Row]) -> dict[str, list[Row]]:
    found: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        found[row.instrument].append(row)
    return dict(found)


class TestSplitFeed:
    @pytest.mark.parametrize("schema", ROW_SCHEMAS)
    @settings(max_examples=60, deadline=None)
    @given(feed=feeds(), partitions=st.integers(1, 4), cuts=st.lists(st.integers(0, 120)))
    def test_partitions_with_marks_write_the_file_jobs_rows(
        self, schema: str, feed: tuple[list[Event], set[int]], partitions: int, cuts: list[int]
    ) -> None:
        """Per instrument, the rows of the partitions (each applying its events, in batches
        cut anywhere, with every mark) are the rows of the whole feed; one partition writes
        them in the same order."""
        events, gaps = feed
        whole = Depths(SCHEMAS[schema])
        expected: list[Row] = []
        whole.apply(events, expected, [], gaps)
        whole.finish(expected)

        maker = MarkMaker(SCHEMAS[schema].interval, partitions)
        depths = [Depths(SCHEMAS[schema]) for _ in range(partitions)]
        got: list[Row] = []
        bounds = sorted({0, len(events), *(c for c in cuts if c < len(events))})
        for start, end in pairwise(bounds):
            batch = events[start:end]
            marks = maker.marks(batch, {e.seq for e in batch} & gaps, by_line=False)
            for p, d in enumerate(depths):
                mine = [e for e in batch if partition_of(e.instrument, partitions) == p]
                # no two marks of one kind in a row between two of its events
                places = [e.seq for e in mine]
                for a, b in pairwise(marks[p]):
                    assert a.kind != b.kind or any(a.place <= x < b.place for x in places)
                encoded = encode_marks(marks[p])
                assert not marks[p] or decode_marks(encoded) == marks[p]
                apply_marked(d, mine, marks[p], got, [], by_line=False)
        for d in depths:
            d.finish(got)
        assert per_instrument(got) == per_instrument(expected)
        if partitions == 1:
            assert got == expected

    @settings(max_examples=50, deadline=None)
    @given(feed=feeds())
    def test_marks_sent_again_change_nothing(self, feed: tuple[list[Event], set[int]]) -> None:
        """A publisher that starts again mid-feed (its clock unknown) sends clock marks the
        partitions already had, or needlessly: the rows are the same."""
        events, _ = feed
        schema = SCHEMAS["bbo-1s"]
        expected: list[Row] = []
        whole = Depths(schema)
        whole.apply(events, expected, [])
        whole.finish(expected)
        half = len(events) // 2
        first, again = MarkMaker(schema.interval, 1), MarkMaker(schema.interval, 1)
        marks = first.marks(events, (), by_line=False)[0]
        marks += again.marks(events[half:], (), by_line=False)[0]
        marks.sort(key=lambda m: m.place)
        got: list[Row] = []
        d = Depths(schema)
        apply_marked(d, events, marks, got, [], by_line=False)
        d.finish(got)
        assert got == expected


class TestHeader:
    @given(st.lists(st.tuples(st.integers(0, 2**64 - 1), st.booleans(),
                              st.integers(0, 2**63 - 1))))  # fmt: skip
    def test_written_and_read_back(self, drawn: list[tuple[int, bool, int]]) -> None:
        """Places in order, clocks' intervals in order (as the publisher makes them)."""
        places = sorted(p for p, _, _ in drawn)
        intervals = iter(sorted(k for _, clock, k in drawn if clock))
        marks = [Mark(p, CLOCK, next(intervals)) if clock else Mark(p, GAP)
                 for p, (_, clock, _) in zip(places, drawn, strict=True)]  # fmt: skip
        if marks:
            assert decode_marks(encode_marks(marks)) == marks

    @pytest.mark.parametrize(
        "text",
        ["", "1", "1x", "g", "-1g", "01g", "1g2", "1c", "1c-5", "1c01", "2g,-1g", "1g,,2g",
         f"{2**64}g", f"1c{2**63}", f"{2**63}g,{2**63}g", "1 g", "\uff11g"],
    )  # fmt: skip
    def test_anything_else_is_refused(self, text: str) -> None:
        with pytest.raises(ValueError):
            decode_marks(text)
