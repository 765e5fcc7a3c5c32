"""The stages' work as pure steps (run/steps.py, run/cuts.py), driven directly with a fake clock, on
each core: no event loop, no file, no subprocess."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from l3tol1.core.naming import MboNamer
from l3tol1.errors import InputError
from l3tol1.run.batch import Batch
from l3tol1.run.cuts import CutPolicy
from l3tol1.run.steps import ApplyStep, FeedStep, ParseStep
from l3tol1.sources.base import Chunk, Position
from tests.conftest import HEADER, add, book_rows
from tests.model import ev

AT = Position("/in.csv", 1, 2, b"head", 100, 5)


def chunk(rows: list[str], first_line: int = 2, **kwargs: Any) -> Chunk:
    data = "".join(r + "\n" for r in rows).encode()
    return Chunk(data, first_line, AT, **kwargs)


def seqs(batch: Batch | None) -> list[int]:
    return [] if batch is None or batch.events is None else [e.seq for e in batch.events]


class TestCutPolicy:
    def test_due_every_interval_and_after_each_save(self) -> None:
        """Due ``interval`` after its start; a save moves it on from the save's time."""
        cuts = CutPolicy(1.0, now=100.0)
        assert not cuts.due(100.5) and cuts.due(101.0)
        cuts.saved(101.0, seconds=0.001)
        assert not cuts.due(101.5) and cuts.due(102.0)

    def test_a_slow_save_stretches_the_interval(self) -> None:
        """A save that took 0.5 s makes the next due 10 s later: at most ~5% of the run."""
        cuts = CutPolicy(1.0, now=0.0)
        cuts.saved(1.0, seconds=0.5)
        assert not cuts.due(10.9) and cuts.due(11.0)

    def test_a_wish_makes_it_due_at_once(self) -> None:
        """A part waiting to close (`want`) makes the next batch a cut."""
        cuts = CutPolicy(3600.0, now=0.0)
        cuts.want()
        assert cuts.due(0.0)


class TestFeedStep:
    def step(self, core: Any, cuts: CutPolicy | None = None, **feed: Any) -> FeedStep:
        return FeedStep(
            core.feed(**feed), AT, MboNamer().snapshot(), core=core, cuts=cuts
        )  # fmt: skip

    def batch(self, core: Any, *seq: int, **kwargs: Any) -> Batch:
        return Batch(core.events([ev(s, line=s) for s in seq]), position=AT, **kwargs)

    def test_events_leave_in_seq_order(self, core: Any) -> None:
        """Contiguous seqs go through at once; a later one waits for the gap to fill."""
        step = self.step(core, start_seq=1)
        assert seqs(step.step(self.batch(core, 1, 2, 4), now=0.0)) == [1, 2]
        assert seqs(step.step(self.batch(core, 3), now=0.0)) == [3, 4]

    def test_the_deadline_is_the_gap_timeout_and_a_step_without_batch_expires(
        self, core: Any
    ) -> None:
        """Following (a gap timeout): the step says when to wake up, and a step with no batch
        at that time declares the gap lost and releases what waited."""
        step = self.step(core, start_seq=1, gap_timeout=2.0)
        assert step.deadline() is None
        assert seqs(step.step(self.batch(core, 3, 4), now=10.0)) == []
        assert step.deadline() == 12.0
        assert step.step(None, now=11.0) is None  # not yet: nothing to send
        with capture_logs() as logs:
            assert seqs(step.step(None, now=12.0)) == [3, 4]
        assert [(e["event"], e["first_seq"], e["last_seq"]) for e in logs] == [
            ("gap_skipped", 1, 2)
        ]

    def test_a_cut_when_due_and_only_when_something_changed(self, core: Any) -> None:
        """The cut policy says when; an idle feed records nothing new."""
        cuts = CutPolicy(1.0, now=0.0)
        step = self.step(core, cuts, start_seq=1)
        out = step.step(self.batch(core, 1), now=0.5)
        assert out is not None and out.cut is None
        assert step.deadline() == 1.0  # something changed: wake up for the cut
        out = step.step(None, now=1.0)
        assert out is not None and out.cut is not None
        assert out.cut.input.offset == AT.offset and out.cut.feed.next_seq == 2
        cuts.saved(1.0, 0.0)
        assert step.deadline() is None  # nothing new since: no cut to wait for
        assert step.step(None, now=5.0) is None

    def test_the_end_of_input_is_always_a_cut(self, core: Any) -> None:
        """At the end the window closes and the gaps are lost (SPEC §5); then a cut."""
        cuts = CutPolicy(3600.0, now=0.0)
        step = self.step(core, cuts)
        out = step.step(self.batch(core, 7, 5, end_of_input=True), now=0.0)
        assert out is not None and out.cut is not None and seqs(out) == [5, 7]
        assert out.rejects == [] and out.end_of_input

    def test_a_stop_cuts_what_waits(self, core: Any) -> None:
        """Stopped: no event is released, and the checkpoint keeps those that wait."""
        step = self.step(core, CutPolicy(3600.0, now=0.0), start_seq=1)
        step.step(self.batch(core, 2, 3), now=0.0)
        last = step.stopped()
        assert last is not None and last.cut is not None and seqs(last) == []
        assert [e.seq for e in last.cut.feed.pending] == [2, 3]
        assert self.step(core).stopped() is None  # no checkpoint: nothing to send

    def test_late_and_duplicate_rejects_join_the_parsers_in_line_order(self, core: Any) -> None:
        from l3tol1.core.records import Reason, Reject

        step = self.step(core, start_seq=5)
        parsed = Reject(6, Reason.PRICE, "x")
        out = step.step(self.batch(core, 4, rejects=[parsed]), now=0.0)
        assert out is not None
        assert [(r.line, r.reason) for r in out.rejects] == [(4, "late"), (6, "bad price")]


class TestParseStep:
    def step(self, core: Any, namer: MboNamer | None = None) -> ParseStep:
        return ParseStep("in.csv", core=core, instrument_column=None, namer=namer or MboNamer())

    def test_a_header_then_rows(self, core: Any) -> None:
        step = self.step(core)
        batch = step.step(chunk(book_rows(1, 3), header=HEADER))
        assert seqs(batch) == [1, 2, 3] and batch.layout == (False, False)
        assert batch.position == AT and not step.ended

    def test_a_header_that_cannot_be_used_ends_the_input(self, core: Any) -> None:
        """Met while running (a rotated file of other columns): the batch carries the error
        as damage, and the step is ended (the loop stops reading)."""
        step = self.step(core)
        step.step(chunk(book_rows(1, 3), header=HEADER))
        batch = step.step(chunk(["1,x"], header="seq_num,time"))
        assert step.ended and batch.end_of_input
        assert isinstance(batch.damage, InputError) and "lacks" in str(batch.damage)

    def test_the_names_travel_only_when_they_changed(self, core: Any) -> None:
        """A batch carries the namer's state only when parsing it changed the namer."""
        namer = MboNamer()
        step = self.step(core, namer)
        assert step.step(chunk(book_rows(1, 2), header=HEADER)).names is None
        namer.key(1, 5482, 0)
        assert step.step(chunk(book_rows(3, 4), 4)).names == namer.snapshot()
        assert step.step(chunk(book_rows(5, 6), 6)).names is None


class TestApplyStep:
    def test_quotes_and_the_books_of_a_cut(self, core: Any) -> None:
        """Quotes by the write rule; a cut takes the books as they are after the batch."""
        from l3tol1.run.batch import Cut

        step = ApplyStep(core.instruments(), MboNamer(), core=core)
        parser = core.csv_parser(HEADER)
        events, _ = parser.parse("".join(r + "\n" for r in book_rows(1, 4)).encode(), 2)
        cut = Cut(None, None, MboNamer().snapshot())  # type: ignore[arg-type]
        out = step.step(Batch(core.events(events) if type(events) is list else events, cut=cut))
        assert [q.seq for q in out.quotes] == [2, 3, 4]
        assert cut.instruments is not None and cut.instruments.applied == 4
        assert out.events is None

    def test_listed_instruments_never_met_are_said_once(self, core: Any) -> None:
        step = ApplyStep(core.instruments(["A", "Z"]), MboNamer(), core=core, listed=("A", "Z"))
        parser = core.csv_parser("instrument," + HEADER)
        events, _ = parser.parse(f"A,{add(1, 'a', 'BUY', '10', '1')}\n".encode(), 2)
        events = core.events(events) if type(events) is list else events
        with capture_logs() as logs:
            step.step(Batch(events))
            step.step(Batch(core.events(), end_of_input=True))
        assert [(e["event"], e["instruments"]) for e in logs] == [("instruments_not_seen", ["Z"])]


@pytest.fixture(autouse=True)
def _no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A step touches no file: run from an empty directory that would show any."""
    monkeypatch.chdir(tmp_path)
    yield
    assert list(tmp_path.iterdir()) == []
