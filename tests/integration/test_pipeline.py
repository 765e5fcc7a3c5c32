"""The whole pipeline in process (run/), on real files, on each core: the file job and its stop,
with pytest-asyncio. The same runs through the real CLI are the system tests'."""

from __future__ import annotations

import signal
from pathlib import Path

import anyio
import pytest
import structlog

from l3tol1.core import available
from l3tol1.run import file_job
from l3tol1.settings import Settings
from l3tol1.signals import Stop
from tests.conftest import REFERENCE_INPUT, REFERENCE_OUTPUT, book_rows, read_checkpoint, write_l3

pytestmark = pytest.mark.asyncio
CORES = ["python", pytest.param("compiled", marks=pytest.mark.skipif(
    not available(), reason="the compiled core was not built"))]  # fmt: skip


def stop() -> Stop:
    return Stop(structlog.get_logger())


@pytest.mark.parametrize("core", CORES)
async def test_the_reference_input_gives_the_golden_output(tmp_path: Path, core: str) -> None:
    out = tmp_path / "l1.csv"
    settings = Settings(input_file=REFERENCE_INPUT, output_file=out, follow=False, core=core)
    pipeline = file_job(settings, stop=stop())
    with anyio.fail_after(60):
        await pipeline.run()
    assert out.read_bytes() == REFERENCE_OUTPUT.read_bytes()
    counters = pipeline.report.counters()
    assert counters["events_applied"] == 34_247 and counters["rows_written"] > 0
    assert pipeline.stopped_by is None


@pytest.mark.parametrize("core", CORES)
async def test_a_stop_signal_drains_the_line_and_checkpoints(tmp_path: Path, core: str) -> None:
    """Following, SIGTERM raised in this process: the rows before a gap are written, the events
    waiting behind it stay unapplied and are kept in the checkpoint; the run returns."""
    src = write_l3(tmp_path / "l3.csv", [*book_rows(1, 10), *book_rows(12, 15)])
    out, ckpt = tmp_path / "l1.csv", tmp_path / "c.ckpt"
    settings = Settings(
        input_file=src, output_file=out, start_seq=1, gap_timeout=3600, core=core,
        checkpoint=ckpt, max_flush_interval=0.01, poll_interval=0.005,
    )  # fmt: skip
    pipeline = file_job(settings, stop=stop())
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(pipeline.run)
            while not (out.exists() and out.read_text().count("\n") == 10):  # 9 rows + header
                await anyio.sleep(0.005)
            signal.raise_signal(signal.SIGTERM)
    assert pipeline.stopped_by == "SIGTERM"
    state = read_checkpoint(ckpt)
    assert state.feed.next_seq == 11 and [e.seq for e in state.feed.pending] == [12, 13, 14, 15]
    assert state.output is not None and state.output.rows == 9
