"""Many instruments in one feed (SPEC §9), through the real CLI, against the naive reference:
a sort-then-apply model that keeps one dict of orders per instrument and scans it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from bench.generate import generate
from bench.naive import convert

from tests.conftest import DATA, HEADER, add, cli


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


class TestInstrumentsOption:
    """--instruments as CSV fields, repeated, and the listed names never met (issue 17); the
    names read in process are unit/test_instruments.py's."""

    @pytest.mark.parametrize("text", ['"ES', '"ES" NQ', 'E"S', '""', " , "])
    def test_a_list_that_cannot_be_read_is_refused(self, tmp_path: Path, text: str) -> None:
        """One line, exit 2."""
        result = cli("-i", tmp_path / "x.csv", "--no-follow", "--instruments", text)
        assert result.returncode == 2
        assert result.stderr.startswith("l3tol1: error: argument --instruments: invalid")

    def feed(self, folder: Path) -> Path:
        rows = [
            f'"ES,H1",{add(1, "a", "BUY", "10", "1")}',
            f'"ES,H1",{add(2, "b", "SELL", "11", "1")}',
            f"NQ,{add(3, 'a', 'BUY', '20', '1')}",
            f"NQ,{add(4, 'b', 'SELL', '21', '1')}",
            f"CL,{add(5, 'a', 'BUY', '30', '1')}",
            f"CL,{add(6, 'b', 'SELL', '31', '1')}",
        ]
        src = folder / "l3.csv"
        src.write_text("instrument," + HEADER + "\n" + "".join(r + "\n" for r in rows))
        return src

    def kept(self, folder: Path, *args: str, env: dict[str, str] | None = None) -> list[str]:
        out = folder / "l1.csv"
        result = cli("-i", self.feed(folder), "-o", out, "--no-follow", *args, env=env)
        assert result.returncode == 0, result.stderr
        return [row[1] for row in csv.reader(out.read_text().splitlines()[1:])]

    def test_spaces_quotes_and_repetition_select(self, tmp_path: Path) -> None:
        """`"ES,H1", NQ` keeps both (the space went, the quoted comma stayed); the option
        repeated adds up; the variable reads the same fields."""
        from tests.conftest import cli_env

        assert self.kept(tmp_path, "--instruments", '"ES,H1", NQ') == ["ES,H1", "NQ"]
        assert self.kept(tmp_path, "--instruments", "NQ", "--instruments", '"ES,H1"') == [
            "ES,H1",
            "NQ",
        ]
        env = cli_env(L3TOL1_INSTRUMENTS='CL, "ES,H1"')
        assert self.kept(tmp_path, env=env) == ["ES,H1", "CL"]

    def test_listed_instruments_never_met_are_said(self, tmp_path: Path) -> None:
        """The summary lists the listed instruments of which nothing was met
        (`instruments_not_seen`, in the order listed), and one warning says so at the end of
        the input; none when every one was met."""
        src, out = self.feed(tmp_path), tmp_path / "l1.csv"
        args = ["-i", src, "-o", out, "--no-follow", "--log-format", "json"]
        result = cli(*args, "--instruments", 'ZZ, NQ, es, "ES,H1 "')
        assert result.returncode == 0, result.stderr
        records = [json.loads(line) for line in result.stderr.splitlines()]
        warnings = [r for r in records if r["event"] == "instruments_not_seen"]
        assert len(warnings) == 1 and warnings[0]["level"] == "warning"
        assert warnings[0]["instruments"] == ["ZZ", "es", "ES,H1 "]
        summary = next(r for r in records if r["event"] == "summary")
        assert summary["instruments_not_seen"] == ["ZZ", "es", "ES,H1 "]
        result = cli(*args, "--instruments", "NQ,CL")
        records = [json.loads(line) for line in result.stderr.splitlines()]
        assert not [r for r in records if r["event"] == "instruments_not_seen"]
        assert next(r for r in records if r["event"] == "summary")["instruments_not_seen"] == []

    def test_databento_names_never_met_are_said(self, tmp_path: Path) -> None:
        """Databento's books are named by their symbol: a listed symbol that is met is not
        reported, one that is not is."""
        src = DATA / "dbn" / "test_data.mbo.dbn"
        out = tmp_path / "l1.csv"
        result = cli("-i", src, "-o", out, "--log-format", "json", "--instruments", "ESH1,NOPE")
        assert result.returncode == 0, result.stderr
        summary = next(json.loads(x) for x in result.stderr.splitlines() if '"summary"' in x)
        assert summary["instruments_not_seen"] == ["NOPE"]
