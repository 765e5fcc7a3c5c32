"""Hostile L3 CSV for the fuzz tests (unit/test_parser_fuzz.py, integration/test_pipeline_fuzz.py):
hypothesis strategies of headers, good rows, spreadsheet-mangled cells and whole files of random
and mangled bytes. The seed is fixed (derandomize); set L3TOL1_FUZZ_EXAMPLES to run longer than
CI's budget.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from l3tol1.core.csv_parser import REQUIRED_COLUMNS
from l3tol1.core.records import Reason

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
