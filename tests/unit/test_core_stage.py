"""The core stage's async shell (run/stages.py) in process, on each core: parse, feed and the books
on each chunk in one stage; woken by a gap's timeout with no chunk to read; for a tail that is a
stage of its own (publish), the ordered events handed on unapplied."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from l3tol1.core.naming import MboNamer
from l3tol1.run.batch import Batch
from l3tol1.run.stages import Health, core_stage
from l3tol1.run.steps import ApplyStep, FeedStep, ParseStep
from l3tol1.sources.base import Chunk, Position
from tests.conftest import HEADER, add

AT = Position("/in.csv", 1, 2, b"head", 100, 5)
GAP_TIMEOUT = 0.05


def run_core(
    core: Any, chunks: list[Chunk], *, books: bool, hold: float = 0.0
) -> tuple[list[Batch], bool]:
    """The batches the core stage sends for ``chunks`` (the input held open ``hold`` seconds
    more, then closed), and whether it stopped the reading."""
    namer = MboNamer()
    parse = ParseStep("in.csv", core=core, instrument_column=None, namer=namer)
    feed = FeedStep(core.feed(start_seq=1, gap_timeout=GAP_TIMEOUT), AT, namer.snapshot(),
                    core=core, cuts=None)  # fmt: skip
    apply = ApplyStep(core.instruments(), namer, core=core) if books else None
    stopped: list[bool] = []

    async def main() -> list[Batch]:
        chunks_out, chunks_in = anyio.create_memory_object_stream[Chunk](2)
        done_out, done_in = anyio.create_memory_object_stream[Batch](8)
        async with anyio.create_task_group() as group, done_in:
            group.start_soon(core_stage, parse, feed, apply, chunks_in, done_out,
                             Health(time.monotonic), time.monotonic,
                             lambda: stopped.append(True))  # fmt: skip
            async with chunks_out:
                for chunk in chunks:
                    await chunks_out.send(chunk)
                await anyio.sleep(hold)
            with anyio.fail_after(10):
                return [batch async for batch in done_in]

    return anyio.run(main), bool(stopped)


def rows(*lines: str) -> bytes:
    return "".join(line + "\n" for line in lines).encode()


def test_the_books_are_applied_in_the_core_stage_and_a_gap_times_out(core: Any) -> None:
    """Seqs 1, 2 and 4: the first two are quoted at once; 4 waits for 3 until the gap's timeout,
    which wakes the stage without a chunk, declares 3 lost, and quotes 4."""
    first = Chunk(rows(add(1, "a", "BUY", "10", "1"), add(2, "b", "SELL", "11", "1"),
                       add(4, "c", "SELL", "10.5", "1")), 2, AT, header=HEADER)  # fmt: skip
    with capture_logs() as logs:
        # no chunk after the first: the gap's deadline wakes the stage
        batches, stopped = run_core(core, [first], books=True, hold=20 * GAP_TIMEOUT)
    assert not stopped
    assert [len(b.quotes) for b in batches] == [1, 1]
    assert [[q.seq for q in b.quotes] for b in batches] == [[2], [4]]
    assert all(b.events is None for b in batches)  # applied: quotes only
    assert batches[0].layout == (False, False) and batches[1].gaps == [4]
    assert [(e["event"], e["lost"]) for e in logs if e["event"] == "gap_skipped"] == [
        ("gap_skipped", 1)
    ]


def test_a_tail_of_its_own_gets_the_ordered_events(core: Any) -> None:
    """publish's tail: the core stage stops after the feed and hands on events in seq order."""
    first = Chunk(rows(add(2, "b", "SELL", "11", "1"), add(1, "a", "BUY", "10", "1")), 2, AT,
                  header=HEADER)  # fmt: skip
    second = Chunk(rows(add(3, "c", "SELL", "10.5", "1")), 4, AT)
    batches, stopped = run_core(core, [first, second], books=False)
    assert not stopped
    assert [[e.seq for e in b.events] for b in batches] == [[1, 2], [3]]
    assert all(b.quotes is None for b in batches)


@pytest.mark.parametrize("books", [True, False])
def test_a_header_that_cannot_be_used_stops_the_reading(core: Any, books: bool) -> None:
    """A followed file replaced by one without the columns: the reading is stopped, the batch
    carries the error, and what came after it is not parsed."""
    bad = Chunk(b"", 1, AT, header="a,b,c")
    after = Chunk(rows(add(1, "a", "BUY", "10", "1")), 2, AT)
    batches, stopped = run_core(core, [bad, after], books=books)
    assert stopped
    assert len(batches) == 1 and batches[0].end_of_input and batches[0].damage is not None
