"""Hostile input through the whole pipeline in process (SPEC §4): random files of good, mangled and
undecodable lines. Nothing may crash or hang, and lines are conserved: every physical line after
the header is either applied or in the reject file. The strategies are tests/fuzz.py's.
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import anyio
import structlog
from hypothesis import example, given
from hypothesis import strategies as st

from l3tol1.log import configure_logging
from l3tol1.run import file_job
from l3tol1.settings import Settings
from l3tol1.signals import Stop
from tests.conftest import HEADER
from tests.fuzz import REASONS, bodies, fuzz

HEADER_COLUMNS = HEADER.split(",")


class TestPipelineFuzz:
    @fuzz
    @given(bodies(), st.integers(0, 5))
    # U+0085 (NEL) in a rejected line: a line end for str.splitlines, once written unescaped
    # (found by L3TOL1_FUZZ_EXAMPLES=5000)
    @example((HEADER_COLUMNS, b"\xc2\x85"), 0)
    def test_lines_are_conserved(self, case: tuple[list[str], bytes], max_pending: int) -> None:
        """Random files: exit cleanly, and applied + rejected == physical lines after header."""
        columns, body = case
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            src = folder / "l3.csv"
            src.write_bytes(",".join(columns).encode() + b"\n" + body)
            configure_logging("json", "error", stream=io.StringIO())
            settings = Settings(
                input_file=src,
                output_file=folder / "l1.csv",
                follow=False,
                max_pending=max_pending,
                progress_interval=3600,
            )
            pipeline = file_job(settings, stop=Stop(structlog.get_logger()))

            async def run() -> None:
                with anyio.fail_after(30):  # never hangs
                    await pipeline.run()

            try:
                anyio.run(run)
            finally:
                structlog.reset_defaults()
            counters = pipeline.report.counters()
            lines = body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)
            rejected = sum(counters["rejects"].values())
            assert counters["events_applied"] + rejected == lines
            records = [
                json.loads(x)
                for x in (folder / "l1.csv.rejects.jsonl").read_text("utf-8").splitlines()
            ]
            assert len(records) == rejected
            assert all(r["reason"] in REASONS and 2 <= r["line"] <= lines + 1 for r in records)
            assert len({r["line"] for r in records}) == rejected
            output = (folder / "l1.csv").read_text("utf-8").splitlines()
            assert output[0] == "time,bid_price,ask_price,bid_size,ask_size,seq_num"
