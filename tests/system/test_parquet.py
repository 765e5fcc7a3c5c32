"""Parquet output (SPEC §11): the same rows as the CSV output, complete parts, exactly once."""

from __future__ import annotations

import csv
import random
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from bench.generate import generate

from tests.conftest import (
    REFERENCE_INPUT,
    REFERENCE_OUTPUT,
    cli,
    read_offset,
    stamp,
    start_cli,
    wait_for,
    write_l3,
)
from tests.system.kills import kill_after_progress


def csv_rows(path: Path) -> list[tuple]:
    """The L1 CSV's rows as Parquet holds them: µs times, float prices, int sizes and seqs."""
    rows = []
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        for row in reader:
            values = dict(zip(header, row, strict=True))
            stamp = datetime.strptime(values["time"], "%Y-%m-%d %H:%M:%S.%f UTC")
            rows.append(
                (
                    stamp.replace(tzinfo=UTC),
                    *([values["instrument"]] if "instrument" in values else []),
                    float(values["bid_price"]),
                    float(values["ask_price"]),
                    int(values["bid_size"]),
                    int(values["ask_size"]),
                    int(values["seq_num"]),
                )
            )
    return rows


def parquet_rows(folder: Path) -> list[tuple]:
    """Every row of the dataset, read as a whole by pyarrow."""
    table = pq.read_table(folder)
    return [tuple(row.values()) for row in table.to_pylist()]


def parts(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


class TestSameRowsAsCsv:
    def test_reference_data(self, tmp_path: Path) -> None:
        """The reference input as Parquet: the golden CSV's rows, values and order."""
        out = tmp_path / "l1.parquet"
        result = cli("-i", REFERENCE_INPUT, "-o", out, "--no-follow")
        assert result.returncode == 0, result.stderr
        table = pq.read_table(out)
        assert str(table.schema.field("time").type) == "timestamp[us, tz=UTC]"
        assert str(table.schema.field("seq_num").type) == "uint64"
        assert "instrument" not in table.schema.names
        assert parquet_rows(out) == csv_rows(REFERENCE_OUTPUT)
        assert parts(out) == ["part-000000.parquet"]

    def test_many_instruments_in_parts(self, tmp_path: Path) -> None:
        """Twenty instruments, parts of 2,000 rows: the CSV run's rows, instrument column
        included, across complete parts named in order."""
        src = tmp_path / "l3.csv"
        generate(src, 40_000, seed=9, window=20, instruments=20)
        out_csv, out_pq = tmp_path / "l1.csv", tmp_path / "l1.parquet"
        assert cli("-i", src, "-o", out_csv, "--no-follow").returncode == 0
        result = cli(
            "-i", src, "-o", out_pq, "--no-follow", "--output-format", "parquet",
            "--part-rows", "2000",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        expected = csv_rows(out_csv)
        assert parquet_rows(out_pq) == expected
        names = parts(out_pq)
        assert names == [f"part-{i:06d}.parquet" for i in range(len(names))]
        assert len(names) == -(-len(expected) // 2000)
        assert all(pq.read_metadata(out_pq / n).num_rows <= 2000 for n in names)

    def test_polars_reads_the_dataset_as_a_whole(self, tmp_path: Path) -> None:
        """Another reader than pyarrow: polars reads the parts as one table, the same rows."""
        import polars as pl

        out = tmp_path / "l1.parquet"
        assert (
            cli("-i", REFERENCE_INPUT, "-o", out, "--no-follow", "--part-rows", "5000").returncode
            == 0
        )
        frame = pl.read_parquet(out / "*.parquet")
        assert frame.columns == [
            "time",
            "bid_price",
            "ask_price",
            "bid_size",
            "ask_size",
            "seq_num",
        ]
        assert frame.height == 19_290 and frame["seq_num"].is_sorted()

    def test_a_fresh_run_replaces_the_dataset(self, tmp_path: Path) -> None:
        """Without a checkpoint, a run writes the dataset anew: old parts do not linger."""
        out = tmp_path / "l1.parquet"
        out.mkdir()
        (out / "part-000007.parquet").write_bytes(b"old")
        (out / ".part-000008.parquet.tmp").write_bytes(b"old")
        (out / "notes.txt").write_text("kept: not a part")
        assert cli("-i", REFERENCE_INPUT, "-o", out, "--no-follow").returncode == 0
        assert parts(out) == ["notes.txt", "part-000000.parquet"]


class TestExactlyOnce:
    def test_kill_9_loop_with_many_instruments(
        self, survived: Callable[[str, int], None], tmp_path: Path
    ) -> None:
        """A hundred instruments to Parquet, >= 10 kill -9 mid-stream, then a clean finish:
        every row once, in complete parts, nothing else in the directory."""
        src = tmp_path / "l3.csv"
        generate(src, 150_000, seed=4, window=20, instruments=100)
        expected_csv = tmp_path / "expected.csv"
        assert (
            cli("-i", src, "-o", expected_csv, "--no-follow", "--max-pending", "1000").returncode
            == 0
        )
        out, ckpt = tmp_path / "l1.parquet", tmp_path / "state.ckpt"
        args = ("-i", src, "-o", out, "--no-follow", "--max-pending", "1000",
                "--part-rows", "3000", "--checkpoint", ckpt)  # fmt: skip
        rng = random.Random(7)
        kills = 0
        while kills < 10:
            for leftover in [*(out.iterdir() if out.exists() else []), ckpt]:
                leftover.unlink(missing_ok=True)
            while kill_after_progress(args, ckpt, rng):
                kills += 1
            result = cli(*args, timeout=300)
            assert result.returncode == 0, result.stderr
            assert parquet_rows(out) == csv_rows(expected_csv), "rows lost or duplicated"
            names = parts(out)
            assert names == [f"part-{i:06d}.parquet" for i in range(len(names))]
            assert not any(p.name.endswith(".tmp") for p in out.iterdir())
        survived("parquet output", kills)

    def test_a_crash_between_checkpoint_and_rename_is_finished(self, tmp_path: Path) -> None:
        """A part the checkpoint names but which is still under its temporary name (the crash
        came between the two) is renamed by the restart; a part it does not name is deleted."""
        src = write_l3(tmp_path / "l3.csv", [])
        out, ckpt = tmp_path / "l1.parquet", tmp_path / "c.ckpt"
        rows = REFERENCE_INPUT.read_text().splitlines()
        src.write_text("\n".join(rows[:20_000]) + "\n")
        args = ("-i", src, "-o", out, "--part-rows", "2000", "--checkpoint", ckpt,
                "--start-seq", "1627942268920653171", "-t", "0.02")  # fmt: skip
        proc = start_cli(*args)
        wait_for(lambda: out.exists() and len(parts(out)) >= 3, 30, "three parts")
        before = stamp(ckpt)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert stamp(ckpt) != before
        last = parts(out)[-1]
        (out / last).rename(out / f".{last}.tmp")  # as if killed before its rename
        (out / "part-000099.parquet").write_bytes(b"written after the checkpoint")
        with src.open("a") as f:
            f.write("\n".join(rows[20_000:]) + "\n")
        proc = start_cli(*args)
        # Full parts of the rows after the restart (the last one closes at the stop).
        wait_for(lambda: len(parquet_rows_safe(out)) >= 18_000, 60, "the parts after the restart")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert parquet_rows(out) == csv_rows(REFERENCE_OUTPUT)
        assert "part-000099.parquet" not in parts(out)


def parquet_rows_safe(folder: Path) -> list[tuple]:
    try:
        return parquet_rows(folder)
    except Exception:  # a part being renamed between listing and reading
        return []


@pytest.mark.parametrize("flag", ["--part-interval", "--part-rows"])
def test_following_writes_parts_as_it_goes(tmp_path: Path, flag: str) -> None:
    """Following, parts appear while the run goes on: after --part-interval, or when full."""
    rows = REFERENCE_INPUT.read_text().splitlines()
    src = tmp_path / "l3.csv"
    src.write_text("\n".join(rows[:5_000]) + "\n")
    out = tmp_path / "l1.parquet"
    value = "0.2" if flag == "--part-interval" else "1000"
    proc = start_cli("-i", src, "-o", out, flag, value, "--start-seq", "1627942268920653171")
    wait_for(lambda: out.exists() and len(parts(out)) >= 1, 30, "a first part")
    with src.open("a") as f:
        f.write("\n".join(rows[5_000:]) + "\n")
    if flag == "--part-interval":
        wait_for(lambda: len(parquet_rows_safe(out)) == 19_290, 60, "every row, by interval")
    else:
        wait_for(lambda: len(parquet_rows_safe(out)) == 19_000, 60, "every full part")
    proc.send_signal(signal.SIGTERM)  # the last part closes at the stop
    assert proc.wait(timeout=10) == 0
    assert parquet_rows(out) == csv_rows(REFERENCE_OUTPUT)


def read_everywhere(out: Path) -> dict[str, tuple[list[str], int]]:
    """(columns, rows) of the dataset as each reader docs/contract.md names sees it."""
    import duckdb
    import pandas as pd
    import polars as pl

    table = pq.read_table(out)
    frame = pl.read_parquet(out / "*")  # what issue 17 found failing on an empty dataset
    globbed = pl.read_parquet(out / "*.parquet")
    relation = duckdb.sql(f"SELECT * FROM '{out}/*.parquet'")
    pandas = pd.read_parquet(out)
    return {
        "pyarrow": (table.schema.names, table.num_rows),
        "polars": (frame.columns, frame.height),
        "polars *.parquet": (globbed.columns, globbed.height),
        "duckdb": (relation.columns, len(relation.fetchall())),
        "pandas": (list(pandas.columns), len(pandas)),
    }


COLUMNS = ["time", "bid_price", "ask_price", "bid_size", "ask_size", "seq_num"]


class TestEmptyDataset:
    """A run without rows still leaves a dataset that reads, with its columns (issue 17)."""

    def test_no_rows_one_empty_part(self, tmp_path: Path) -> None:
        """A header and no rows: one part of no rows, read by pyarrow, polars, DuckDB and
        pandas with the columns of the layout."""
        src = write_l3(tmp_path / "l3.csv", [])
        out = tmp_path / "l1.parquet"
        assert cli("-i", src, "-o", out, "--no-follow").returncode == 0
        assert parts(out) == ["part-000000.parquet"]
        seen = read_everywhere(out)
        assert seen == dict.fromkeys(seen, (COLUMNS, 0))
        assert str(pq.read_schema(out / "part-000000.parquet").field("time").type) == (
            "timestamp[us, tz=UTC]"
        )

    def test_the_docs_examples_on_an_empty_instrument_dataset(self, tmp_path: Path) -> None:
        """Instruments of which none is kept (--instruments of one never met): the instrument
        column is there, and the examples of docs/contract.md run on the empty dataset."""
        import duckdb
        import polars as pl

        src = tmp_path / "l3.csv"
        generate(src, 2_000, seed=2, instruments=3)
        out = tmp_path / "l1.parquet"
        result = cli("-i", src, "-o", out, "--no-follow", "--instruments", "NOPE")
        assert result.returncode == 0, result.stderr
        columns = [*COLUMNS[:1], "instrument", *COLUMNS[1:]]
        seen = read_everywhere(out)
        assert seen == dict.fromkeys(seen, (columns, 0))
        # The examples of docs/contract.md (Parquet output), as written there.
        assert pq.read_table(out).to_pandas().empty
        assert pl.read_parquet(f"{out}/*.parquet").is_empty()
        spread = f"SELECT instrument, max(ask_price - bid_price) FROM '{out}/*.parquet' GROUP BY 1"
        assert duckdb.sql(spread).fetchall() == []

    def test_databento_layout(self, tmp_path: Path) -> None:
        """DBN input without a row kept: nanosecond times and the instrument column."""
        out = tmp_path / "l1.parquet"
        src = REFERENCE_INPUT.parent / "dbn" / "test_data.mbo.dbn"
        assert cli("-i", src, "-o", out, "--instruments", "NOPE").returncode == 0
        schema = pq.read_schema(out / "part-000000.parquet")
        assert str(schema.field("time").type) == "timestamp[ns, tz=UTC]"
        assert "instrument" in schema.names and pq.read_table(out).num_rows == 0

    def test_a_resumed_run_replaces_the_empty_part(self, tmp_path: Path) -> None:
        """With --checkpoint, the empty part is part of the checkpointed state; a resumed run
        that then writes rows replaces it by its first part: the part names and rows of one
        uninterrupted run, no stray part."""
        rows = REFERENCE_INPUT.read_text().splitlines(keepends=True)
        src = tmp_path / "l3.csv"
        src.write_text(rows[0])
        out, ckpt = tmp_path / "l1.parquet", tmp_path / "c.ckpt"
        args = ("-i", src, "-o", out, "--no-follow", "--checkpoint", ckpt,
                "--part-rows", "5000")  # fmt: skip
        assert cli(*args).returncode == 0
        assert parts(out) == ["part-000000.parquet"] and pq.read_table(out).num_rows == 0
        from tests.conftest import read_checkpoint

        assert read_checkpoint(ckpt).output.parts == (("part-000000.parquet", 0),)
        with src.open("a") as f:
            f.write("".join(rows[1:]))
        result = cli(*args)
        assert result.returncode == 0, result.stderr
        whole = tmp_path / "whole.parquet"
        assert cli("-i", src, "-o", whole, "--no-follow", "--part-rows", "5000").returncode == 0
        assert parts(out) == parts(whole) and len(parts(out)) == 4
        assert parquet_rows(out) == parquet_rows(whole) == csv_rows(REFERENCE_OUTPUT)

    def test_a_stop_before_any_row_leaves_an_empty_part(self, tmp_path: Path) -> None:
        """Following a file that has no row yet, SIGTERM: the dataset reads (empty)."""
        src = write_l3(tmp_path / "l3.csv", [])
        out = tmp_path / "l1.parquet"
        proc = start_cli("-i", src, "-o", out)
        size = src.stat().st_size
        wait_for(lambda: read_offset(proc.pid, src) == size, 30, "the run to read the header")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert parts(out) == ["part-000000.parquet"]
        assert pq.read_table(out).schema.names == COLUMNS
