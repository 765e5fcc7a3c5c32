"""Many instruments in one feed (SPEC §9), through the real CLI, against the naive reference:
a sort-then-apply model that keeps one dict of orders per instrument and scans it."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from bench.generate import generate
from bench.naive import convert

from tests.conftest import HEADER, add, cli


def naive(src: Path, folder: Path) -> bytes:
    out = folder / "naive.csv"
    convert(src, out)
    return out.read_bytes()


@pytest.mark.parametrize("window", [0, 50, 1000])
@pytest.mark.parametrize("instruments", [1, 5, 1000])
def test_generated_feed_equals_the_per_instrument_model(
    tmp_path: Path, instruments: int, window: int
) -> None:
    """Interleaved instruments displaced by up to `window` places: the model's bytes."""
    src = tmp_path / "l3.csv"
    generate(src, 30_000, seed=instruments + window, window=window, instruments=instruments)
    out = tmp_path / "l1.csv"
    result = cli("-i", src, "-o", out, "--no-follow", "--max-pending", "5000")
    assert result.returncode == 0, result.stderr
    expected = naive(src, tmp_path)
    assert expected.count(b"\n") > 1_000
    assert out.read_bytes() == expected
    assert (tmp_path / "l1.csv.rejects.jsonl").read_bytes() == b""
    summary = next(line for line in result.stderr.splitlines() if '"summary"' in line)
    assert f'"instruments": {instruments}' in summary


def test_kept_instruments_are_the_model_rows_of_those(tmp_path: Path) -> None:
    """--instruments keeps only those books' rows; the others are read and counted."""
    src = tmp_path / "l3.csv"
    generate(src, 20_000, seed=3, window=20, instruments=10)
    out = tmp_path / "l1.csv"
    keep = {"I0002", "I0007"}
    result = cli("-i", src, "-o", out, "--no-follow", "--instruments", ",".join(sorted(keep)))
    assert result.returncode == 0, result.stderr
    rows = naive(src, tmp_path).decode().splitlines()
    expected = [rows[0], *(r for r in rows[1:] if r.split(",")[1] in keep)]
    assert out.read_text().splitlines() == expected
    assert '"events_skipped": ' in result.stderr


def test_symbol_column_and_named_column(tmp_path: Path) -> None:
    """`symbol` is found by name; --instrument-column picks any column; names stay opaque
    (quoted in the output when they hold a comma)."""
    rows = [
        f'"ES,H1",{add(1, "a", "BUY", "10", "1")}',
        f'"ES,H1",{add(2, "b", "SELL", "11", "1")}',
        f"es,{add(3, 'a', 'BUY', '20', '1')}",
        f"es,{add(4, 'b', 'SELL', '21', '1')}",
    ]
    src = tmp_path / "l3.csv"
    src.write_text("symbol," + HEADER + "\n" + "".join(r + "\n" for r in rows))
    out = tmp_path / "l1.csv"
    assert cli("-i", src, "-o", out, "--no-follow", "--start-seq", "1").returncode == 0
    parsed = list(csv.reader(out.read_text().splitlines()))
    assert parsed[0][:2] == ["time", "instrument"]
    assert [(r[1], r[-1]) for r in parsed[1:]] == [("ES,H1", "2"), ("es", "4")]
    venue = tmp_path / "venue.csv"
    venue.write_text("venue," + HEADER + "\n" + f"X,{add(1, 'a', 'BUY', '1', '1')}\n")
    result = cli(
        "-i", venue, "-o", tmp_path / "v.csv", "--no-follow", "--instrument-column", "venue"
    )
    assert result.returncode == 0, result.stderr


def test_bad_instrument_is_rejected(tmp_path: Path) -> None:
    """An empty instrument or one over 64 bytes is `bad instrument`; the run goes on."""
    rows = [f",{add(1, 'a', 'BUY', '10', '1')}", f"{'x' * 65},{add(2, 'a', 'BUY', '10', '1')}"]
    src = tmp_path / "l3.csv"
    src.write_text("instrument," + HEADER + "\n" + "".join(r + "\n" for r in rows))
    out = tmp_path / "l1.csv"
    assert cli("-i", src, "-o", out, "--no-follow").returncode == 0
    rejects = (tmp_path / "l1.csv.rejects.jsonl").read_text()
    assert rejects.count('"bad instrument"') == 2
