"""The write stage's async shell (run/stages.py) in process, with pytest-asyncio: batches in through
a memory stream, real files out, a fake clock."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from l3tol1.checkpoint import CheckpointStore, RunOptions
from l3tol1.core import load
from l3tol1.core.records import Quote, Reason, Reject
from l3tol1.run.batch import Batch, Cut
from l3tol1.run.cuts import CheckpointSaver, CutPolicy
from l3tol1.run.stages import Health, WriteStage
from l3tol1.sinks.base import Sink
from l3tol1.sinks.csv import CsvSink
from l3tol1.sinks.parquet import ParquetSink
from l3tol1.sinks.rejects import RejectSink
from l3tol1.sinks.writer import Writer
from tests.unit.test_checkpoint import PIECES

T = "2021-08-03 01:00:00.100000 UTC"
pytestmark = pytest.mark.asyncio
FORMATTER = load("python").formatter


def quotes(*seqs: int) -> list[Quote]:
    return [Quote(T, "", 100 * 10**9, 101 * 10**9, 1, s, s) for s in seqs]


class Watched(Health):
    """A stage's health that counts the batches the write stage has finished with."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.taken = 0

    def take(self, stage: str) -> float:
        self.taken += stage == "write"
        return super().take(stage)

    async def written(self, count: int) -> None:
        """Wait until the write stage is done with ``count`` batches (and waits for more)."""
        with anyio.fail_after(10):
            while self.taken < count or self.busy["write"] is not None:
                await anyio.sleep(0.001)


class Clock:
    """A fake clock that the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def started(output: Sink, rejects: RejectSink) -> None:
    output.open()
    rejects.open()
    await output.start(None)
    await rejects.start(None)
    output.set_layout(False, False)
    await output.flush(sync=False)  # the header, as the pipeline writes it at start


async def write(stage: WriteStage, batches: list[Batch]) -> None:
    """Run the stage over these batches, then the end of the stream."""
    send, receive = anyio.create_memory_object_stream[Batch](len(batches) + 1)
    for batch in batches:
        send.send_nowait(batch)
    send.close()
    with anyio.fail_after(10):
        await stage.run(receive, Health(Clock()))


class TestWriteStage:
    async def test_a_cut_is_saved_once_its_rows_are_durable(self, tmp_path: Path) -> None:
        """The checkpoint records the output as it stands with the cut's rows written."""
        out = tmp_path / "l1.csv"
        output, rejects = (
            CsvSink(out, formatter=FORMATTER),
            RejectSink(tmp_path / "r"),
        )
        await started(output, rejects)
        clock = Clock()
        writer = Writer(
            output, rejects, batch_size=1000, max_flush_interval=3600, checkpointing=True
        )
        store = CheckpointStore(tmp_path / "c.ckpt")
        store.lock()
        cuts = CutPolicy(3600.0, clock())
        saver = CheckpointSaver(store, RunOptions(None, 10, None), writer, clock)
        stage = WriteStage(writer, saver=saver, cuts=cuts, clock=clock)
        cut = Cut(PIECES[2], PIECES[3], PIECES[6], PIECES[5])
        reject = Reject(7, Reason.PRICE, "x")
        await write(
            stage, [Batch(quotes=quotes(1, 2), rejects=[reject], cut=cut), Batch(quotes=quotes(3))]
        )
        try:
            saved, _ = store.load()
        finally:
            store.unlock()
        assert saved is not None and saved.input == PIECES[2] and saved.feed == PIECES[3]
        assert saved.output is not None and saved.output.rows == 2  # the cut's rows, not row 3
        assert saved.rejects.by_reason == {"bad price": 1}
        lines = out.read_text().splitlines()
        assert len(lines) == 4  # the header and every row: the end flushed row 3 too
        size_at_cut = len("\n".join(lines[:3]) + "\n")
        assert saved.output.file.size == size_at_cut  # type: ignore[union-attr]
        assert cuts.due(clock()) is False  # the save set the next due time

    async def test_rows_are_durable_as_soon_as_the_input_is_caught_up(self, tmp_path: Path) -> None:
        """Following: a batch that ends where the file ends is written at once, not after -t."""
        out = tmp_path / "l1.csv"
        output, rejects = (
            CsvSink(out, formatter=FORMATTER),
            RejectSink(tmp_path / "r"),
        )
        await started(output, rejects)
        writer = Writer(output, rejects, batch_size=1000, max_flush_interval=3600)
        stage = WriteStage(writer, saver=None, cuts=None, clock=Clock())
        send, receive = anyio.create_memory_object_stream[Batch](4)
        health = Watched(Clock())
        async with anyio.create_task_group() as tg, send:  # send closes first: the stage ends
            tg.start_soon(stage.run, receive, health)
            await send.send(Batch(quotes=quotes(1)))
            await health.written(1)
            assert out.read_text().count("\n") == 1  # the header only: batched, -t is an hour
            await send.send(Batch(quotes=quotes(2), caught_up=True))
            with anyio.fail_after(10):  # both rows, without the end of the stream
                while out.read_text().count("\n") < 3:
                    await anyio.sleep(0.01)

    async def test_a_full_part_asks_for_a_cut(self, tmp_path: Path) -> None:
        """With a checkpoint, a Parquet part closes only at a cut: a full one wants one soon."""
        clock = Clock()
        output = ParquetSink(tmp_path / "l1.parquet", part_rows=2, part_interval=None, clock=clock)
        rejects = RejectSink(tmp_path / "r")
        await started(output, rejects)
        writer = Writer(output, rejects, batch_size=1, max_flush_interval=3600, checkpointing=True)
        cuts = CutPolicy(3600.0, clock())
        stage = WriteStage(writer, saver=None, cuts=cuts, clock=clock)
        assert not cuts.due(clock())
        await write(stage, [Batch(quotes=quotes(1)), Batch(quotes=quotes(2, 3))])
        assert cuts.due(clock())
