"""Hostile input: the parser and the whole pipeline on random and mangled bytes.

Nothing may crash or hang, and lines are conserved: every physical line after the header is
either applied or in the reject file. The seed is fixed (derandomize); set L3TOL1_FUZZ_EXAMPLES
to run longer than CI's budget.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import anyio
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l3tol1.core.csv_parser import REQUIRED_COLUMNS, CsvParser
from l3tol1.core.records import Event, Reason, Reject
from l3tol1.log import configure_logging
from l3tol1.run import file_job
from l3tol1.settings import Settings
from l3tol1.signals import Stop
from tests.conftest import HEADER

EXAMPLES = int(os.environ.get("L3TOL1_FUZZ_EXAMPLES", "150"))
REASONS = {str(reason) for reason in Reason}
MANGLED = [
    "1.62794E+18",
    "7.45797E+18",
    "",
    "-1",
    "nan",
    "inf",
    "1e5",
    "٣",
    " 5",
    "0",
    "0.0",
    "300.0",
    "1_000",
    "+3",
    "229.130",
    "\x00",
    '"',
    "BUY",
    "SELL",
    "buy",
    # Numbers past every bound: longer than int()'s digit limit, beyond 64 bits, beyond a double.
    "9" * 5000,
    "1" + "0" * 4400,
    "1" + "0" * 400 + ".0",
    "0." + "0" * 400 + "1",
    "18446744073709551616",
    "4294967296",
    "4294967295",
]

fuzz = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def layouts(draw: st.DrawFn) -> list[str]:
    """A header: the required columns in any order, with extra columns anywhere."""
    columns = draw(st.permutations(REQUIRED_COLUMNS))
    for extra in draw(st.lists(st.sampled_from(["venue", "note", "x"]), max_size=2, unique=True)):
        columns.insert(draw(st.integers(0, len(columns))), extra)
    return columns


@st.composite
def good_rows(draw: st.DrawFn, columns: list[str]) -> str:
    action = draw(st.sampled_from(["add", "update", "delete", "trade"]))
    values = dict.fromkeys(columns, "")
    values["seq_num"] = str(draw(st.integers(0, 60)))
    values[f"{action}_order_id"] = draw(st.sampled_from(["1", "2", "7457972527797790256"]))
    values[f"{action}_side"] = draw(st.sampled_from(["BUY", "SELL"]))
    if action != "delete":
        values[f"{action}_price"] = draw(st.sampled_from(["229", "228.2", "229.13", ".5"]))
        values[f"{action}_qty"] = draw(st.sampled_from(["1", "300", "300.0", "0"]))
    values["time"] = draw(
        st.sampled_from(
            ["2021-08-03 01:00:03.22333 UTC", "2021-08-03 01:00:03 UTC", "2021-02-29 01:00:00 UTC"]
        )
    )
    return ",".join(values[c] for c in columns)


@st.composite
def mangle(draw: st.DrawFn, row: str) -> str:
    fields = row.split(",")
    for _ in range(draw(st.integers(1, 3))):
        fields[draw(st.integers(0, len(fields) - 1))] = draw(st.sampled_from(MANGLED))
    return ",".join(fields)


@st.composite
def bodies(draw: st.DrawFn) -> tuple[list[str], bytes]:
    columns = draw(layouts())
    lines: list[bytes] = []
    for _ in range(draw(st.integers(0, 40))):
        kind = draw(st.sampled_from(["good", "good", "mangled", "bytes", "long", "nul", "utf8"]))
        if kind in ("good", "mangled"):
            row = draw(good_rows(columns))
            lines.append((draw(mangle(row)) if kind == "mangled" else row).encode())
        elif kind == "bytes":
            lines.append(draw(st.binary(max_size=80)).replace(b"\n", b""))
        elif kind == "long":
            lines.append(b"7," * draw(st.integers(33_000, 40_000)))  # over 64 KiB
        elif kind == "nul":
            lines.append(draw(good_rows(columns)).encode().replace(b",", b"\x00", 1))
        else:
            lines.append(draw(good_rows(columns)).encode() + b"\xff\xfe")
    body = b"\n".join(lines)
    if lines and draw(st.booleans()):
        body += b"\n"
    return columns, body


class TestParserFuzz:
    @fuzz
    @given(st.text(max_size=300))
    def test_any_text_is_an_event_or_a_reject(self, text: str) -> None:
        """parse_row never raises; it returns an event or a reject with a known reason."""
        result = CsvParser(HEADER).parse_row(text, 7)
        if isinstance(result, Reject):
            assert result.line == 7 and result.reason in REASONS
            assert result.raw == text.removesuffix("\r")
        else:
            assert isinstance(result, Event) and isinstance(result.seq, int) and result.line == 7

    @fuzz
    @given(st.data())
    def test_mangled_rows_never_crash(self, data: st.DataObject) -> None:
        """Rows with spreadsheet-mangled cells are parsed or rejected, never an error."""
        columns = data.draw(layouts())
        parser = CsvParser(",".join(columns))
        rows = [data.draw(mangle(data.draw(good_rows(columns)))) for _ in range(3)]
        for result in (parser.parse_row(row, 2) for row in rows):
            assert isinstance(result, Event | Reject)
        events, rejects = parser.parse("".join(r + "\n" for r in rows).encode(), 2)
        assert len(events) + len(rejects) == 3


class TestPipelineFuzz:
    @fuzz
    @given(bodies(), st.integers(0, 5))
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
