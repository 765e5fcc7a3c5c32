"""The output schemas (SPEC §14) through the real CLI: every schema from the bundled L3 CSV, a feed
of several instruments, gzip, stdin and a Databento DBN file, as CSV and as Parquet (read back by
pyarrow, polars and DuckDB: the CSV's values exactly, in typed columns); `--schema l1` still the
golden bytes; a restart with another schema refused; kill -9 while following with mbp-1 and
bbo-1s output. The rows themselves are checked against the model in tests/unit/test_schemas.py."""

from __future__ import annotations

import csv
import gzip
import random
import re
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from bench.generate import SEQ_BASE, generate
from bench.generate_mbo import records
from bench.generate_mbo import write as write_mbo

from l3tol1.core.records import Action, Event, Side
from l3tol1.core.schemas import SCHEMAS, csv_columns
from tests.conftest import (
    GOLDEN_SHA256,
    REFERENCE_INPUT,
    ROOT,
    add,
    cli,
    finish,
    read_checkpoint,
    sha256,
    start_cli,
    wait_for,
    write_l3,
)
from tests.mbo import write_csv_export, write_dbn
from tests.model import model_schema_rows
from tests.system.kills import files_of, kill_after_progress, make_stream

ROW_SCHEMAS = ("mbp-1", "mbp-10", "tbbo", "bbo-1s", "bbo-1m")
TIMES = ("ts_recv", "ts_event")
LETTERS = ("action", "side")


def convert(src: Path | str, out: Path, schema: str, *args: str, **popen: object) -> None:
    result = cli("-i", src, "-o", out, "--no-follow", "--schema", schema,
                 "--log-level", "warning", *args, **popen)  # fmt: skip
    assert result.returncode == 0, result.stderr


def typed(name: str, text: str) -> object:
    """A CSV field as the Parquet column of its name holds it (None: empty)."""
    if name == "instrument":
        return text
    if text == "":
        return None
    if name in LETTERS:
        return text
    if name == "price" or name[4:6] == "px":
        return float(text)
    return int(text)


def csv_values(path: Path) -> tuple[list[str], list[tuple]]:
    """A schema's CSV output: its columns, and its rows as typed values."""
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        return header, [
            tuple(typed(n, v) for n, v in zip(header, row, strict=True)) for row in reader
        ]


def pyarrow_values(out: Path) -> list[tuple]:
    table = pq.read_table(out)
    columns = [table[n].cast(pa.int64()) if n in TIMES else table[n] for n in table.schema.names]
    return list(zip(*(c.to_pylist() for c in columns), strict=True))


def polars_values(out: Path) -> list[tuple]:
    import polars as pl

    frame = pl.read_parquet(out / "*.parquet")
    return frame.with_columns(
        *(pl.col(n).cast(pl.Int64) for n in TIMES), *(pl.col(n).cast(pl.Utf8) for n in LETTERS)
    ).rows()


def duckdb_values(out: Path, names: list[str]) -> list[tuple]:
    import duckdb

    columns = ", ".join(f"epoch_ns({n})" if n in TIMES else n for n in names)
    return duckdb.sql(f"SELECT {columns} FROM '{out}/*.parquet'").fetchall()


def check_parquet(
    out: Path, expected_csv: Path, schema: str, instrument: bool, *, every_reader: bool = True
) -> None:
    """The Parquet dataset holds the CSV output's values, in §14's typed columns, as pyarrow
    sees it (``every_reader``: polars and DuckDB too)."""
    names, rows = csv_values(expected_csv)
    assert names == csv_columns(SCHEMAS[schema], instrument)
    table = pq.read_table(out)
    assert table.schema.names == names
    kinds = {str(f.type) for n, f in zip(names, table.schema, strict=True) if n in TIMES}
    assert kinds == {"timestamp[ns, tz=UTC]"}
    expected_types = {
        "instrument": "string", "price": "double", "size": "int64", "sequence": "uint64",
        "flags": "uint8", "action": "dictionary<values=string, indices=int32, ordered=0>",
        "side": "dictionary<values=string, indices=int32, ordered=0>",
        "bid_px_00": "double", "ask_sz_00": "int64", "bid_ct_00": "uint32",
    }  # fmt: skip
    for name, kind in expected_types.items():
        if name in names:
            assert str(table.schema.field(name).type) == kind, name
    assert pyarrow_values(out) == rows
    if every_reader:
        assert polars_values(out) == rows
        assert duckdb_values(out, names) == rows


def docs_samples() -> dict[str, list[str]]:
    """The header and sample rows docs/schemas.md shows of each schema, in its order."""
    text = (ROOT / "docs" / "schemas.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```\n(ts_recv,.*?)```", text, re.S)
    return dict(zip(ROW_SCHEMAS, (b.splitlines() for b in blocks), strict=True))


class TestEveryInputAndFormat:
    @pytest.mark.parametrize("schema", ROW_SCHEMAS)
    def test_bundled_data(self, tmp_path: Path, schema: str) -> None:
        """The bundled L3 CSV: rows in each schema, CSV and Parquet alike."""
        out_csv, out_pq = tmp_path / "rows.csv", tmp_path / "rows.parquet"
        convert(REFERENCE_INPUT, out_csv, schema)
        convert(REFERENCE_INPUT, out_pq, schema)
        _, rows = csv_values(out_csv)
        assert len(rows) >= 4
        header, *sample = docs_samples()[schema]  # the docs show real rows, in a row
        text = out_csv.read_text()
        assert text.startswith(header + "\n") and "\n".join(sample) + "\n" in text
        # mbp-10's 34k rows of 68 columns: read by pyarrow here, by all three from DBN below
        check_parquet(out_pq, out_csv, schema, instrument=False, every_reader=schema != "mbp-10")
        if SCHEMAS[schema].interval:
            interval = SCHEMAS[schema].interval
            assert all(r[0] % interval == 0 for r in rows)  # ts_recv: an interval's end
            assert [r[0] for r in rows] == sorted({r[0] for r in rows})  # one row each

    def test_many_instruments_gzip_and_stdin(self, tmp_path: Path) -> None:
        """Three instruments: the same mbp-10 rows from the file, its gzip and stdin; bbo-1s
        rows of one interval in instrument order; Parquet with the instrument column."""
        src = tmp_path / "l3.csv"
        generate(src, 20_000, seed=5, window=20, instruments=3)
        (tmp_path / "l3.csv.gz").write_bytes(gzip.compress(src.read_bytes()))
        outputs = {}
        for name, source in (("file", src), ("gzip", tmp_path / "l3.csv.gz"), ("stdin", "-")):
            outputs[name] = tmp_path / f"{name}.csv"
            with src.open("rb") as stdin:
                convert(source, outputs[name], "mbp-10", stdin=stdin)
        assert outputs["file"].read_bytes() == outputs["gzip"].read_bytes()
        assert outputs["file"].read_bytes() == outputs["stdin"].read_bytes()
        out_csv, out_pq = tmp_path / "bbo.csv", tmp_path / "bbo.parquet"
        convert(src, out_csv, "bbo-1s")
        convert(src, out_pq, "bbo-1s")
        _, rows = csv_values(out_csv)
        keys = [(r[0], r[2]) for r in rows]  # (ts_recv, instrument)
        assert keys == sorted(set(keys)) and len({r[2] for r in rows}) == 3
        check_parquet(out_pq, out_csv, "bbo-1s", instrument=True)

    @pytest.mark.parametrize("schema", ["mbp-10", "bbo-1s"])
    def test_databento_dbn(self, tmp_path: Path, schema: str) -> None:
        """A zstd DBN file of two publishers and two days: rows named by symbol, ns times,
        CSV and Parquet alike; Databento's CSV export of it gives the same rows."""
        src = tmp_path / "mbo.dbn.zst"
        write_mbo(str(src), 20_000, seed=3, zstd=True, publishers=(1, 2))
        out_csv, out_pq = tmp_path / "rows.csv", tmp_path / "rows.parquet"
        convert(src, out_csv, schema)
        convert(src, out_pq, schema)
        names, rows = csv_values(out_csv)
        assert len(rows) > 100
        assert {"ESH4", "NQH4"} <= {r[names.index("instrument")] for r in rows}
        check_parquet(out_pq, out_csv, schema, instrument=True)
        plain = tmp_path / "mbo.dbn"
        plain.write_bytes(zstandard.ZstdDecompressor().stream_reader(src.read_bytes()).read())
        export = write_csv_export(tmp_path / "mbo.csv", plain, pretty=True, symbols=True)
        convert(export, tmp_path / "from_export.csv", schema)  # Databento's own CSV export
        assert (tmp_path / "from_export.csv").read_bytes() == out_csv.read_bytes()


class TestL1AndRestarts:
    def test_l1_stays_the_golden_file(self, tmp_path: Path) -> None:
        """--schema l1 is the default's rows, byte for byte the golden file."""
        out = tmp_path / "l1.csv"
        convert(REFERENCE_INPUT, out, "l1")
        assert sha256(out) == GOLDEN_SHA256

    @pytest.mark.parametrize("core", ["compiled", "python"])
    @pytest.mark.parametrize("suffix", ["csv", "parquet"])
    def test_a_time_beyond_ns_is_a_bad_time(self, tmp_path: Path, core: str, suffix: str) -> None:
        """A schema's times are int64 ns: an L3 CSV time of 2300 is rejected as a bad time with
        its line (it failed the run, and with a checkpoint looped); l1 writes it as it is."""
        late = "2300-01-01 00:00:00.5 UTC"
        src = write_l3(tmp_path / "l3.csv", [add(1, "a", "BUY", "1", "1"),
                                             add(2, "b", "SELL", "2", "1", late),
                                             add(3, "c", "SELL", "3", "1")])  # fmt: skip
        out, ckpt = tmp_path / f"rows.{suffix}", tmp_path / "state.ckpt"
        convert(src, out, "mbp-1", "--core", core, "--checkpoint", str(ckpt))
        rejects = (tmp_path / f"rows.{suffix}.rejects.jsonl").read_text().splitlines()
        assert len(rejects) == 1 and '"line": 3' in rejects[0] and "bad time" in rejects[0]
        l1 = tmp_path / "l1.csv"
        convert(src, l1, "l1", "--core", core)
        assert "2300-01-01 00:00:00.500000 UTC" in l1.read_text()

    def test_a_restart_with_another_schema_is_refused(self, tmp_path: Path) -> None:
        """The schema is in the checkpoint: another --schema is exit 2, naming both."""
        src = write_l3(tmp_path / "l3.csv", [add(1, "a", "BUY", "1", "1")])
        out, ckpt = tmp_path / "rows.csv", tmp_path / "state.ckpt"
        convert(src, out, "mbp-1", "--checkpoint", str(ckpt))
        result = cli("-i", src, "-o", out, "--no-follow", "--schema", "bbo-1s",
                     "--checkpoint", ckpt)  # fmt: skip
        assert result.returncode == 2
        assert "--schema mbp-1" in result.stderr and "--schema bbo-1s" in result.stderr


def stretched(path: Path, factor: int) -> Path:
    """The file with its times spread ``factor`` times as far from the first one: a generated
    stream covers more sampling intervals."""
    lines = path.read_bytes().split(b"\n")
    first: datetime | None = None
    out = [lines[0]]
    for line in lines[1:]:
        if not line:
            out.append(line)
            continue
        head, _, text = line.rpartition(b",")
        at = datetime.strptime(text.decode(), "%Y-%m-%d %H:%M:%S.%f UTC" if b"." in text
                               else "%Y-%m-%d %H:%M:%S UTC")  # fmt: skip
        first = first or at
        at = first + (at - first) * factor
        out.append(head + b"," + at.strftime("%Y-%m-%d %H:%M:%S.%f UTC").encode())
    path.write_bytes(b"\n".join(out))
    return path


@pytest.fixture(scope="module")
def slow_stream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40k generated events over about two minutes of feed time, with mangled, duplicate and
    late rows (tests/system/kills.py): gaps and rejects."""
    folder = tmp_path_factory.mktemp("slow")
    return stretched(make_stream(folder / "l3.csv", 40_000, seed=12), 30)


class TestKillNineWhileFollowing:
    @pytest.mark.parametrize("schema", ["mbp-1", "bbo-1s"])
    def test_random_kills_while_the_file_grows(
        self, survived: Callable[[str, int], None], tmp_path: Path, slow_stream: Path,
        schema: str,
    ) -> None:  # fmt: skip
        """Following a file that grows during every life, kill -9 after each checkpoint move:
        the rows of the uninterrupted batch run, none lost or repeated (bbo-1s: but the last
        interval, which the feed's time never passes), and the same rejects; kills land with
        an interval open in the durable state."""
        batch = tmp_path / "batch.csv"
        convert(slow_stream, batch, schema, "--max-pending", "1000")
        expected, expected_rejects = files_of(batch)
        if SCHEMAS[schema].interval:
            lines = expected.splitlines(keepends=True)
            last_end = lines[-1].split(b",", 1)[0]
            expected = b"".join(line for line in lines if not line.startswith(last_end + b","))
        assert expected.count(b"\n") > 100
        live, out, ckpt = tmp_path / "live.csv", tmp_path / "rows.csv", tmp_path / "state.ckpt"
        data = slow_stream.read_bytes()
        size = len(data) // 10 + 1
        pieces = [data[i : i + size] for i in range(0, len(data), size)]
        live.write_bytes(b"")
        args = (
            "-i", live, "-o", out, "--follow", "--schema", schema, "--start-seq", str(SEQ_BASE),
            "--max-pending", "1000", "--gap-timeout", "5", "-t", "0.05",
            "--checkpoint", ckpt, "--checkpoint-interval", "0.05", "--log-level", "warning",
        )  # fmt: skip
        rng = random.Random(schema)
        kills = open_at_kill = 0

        def grow() -> None:
            with live.open("ab") as f:
                f.write(pieces.pop(0))

        while pieces:
            assert kill_after_progress(args, ckpt, rng, grow, 1), "exited while following"
            kills += 1
            state = read_checkpoint(ckpt).instruments
            open_at_kill += any(d.sample is not None for d in getattr(state, "depths", []))
        proc = start_cli(*args)
        wait_for(lambda: out.exists() and out.stat().st_size >= len(expected), 120, "the rows")
        status, stderr = finish(proc)
        survived(f"{schema} csv, following a growing file", kills)
        assert status == 0, stderr
        assert files_of(out) == (expected, expected_rejects)
        if SCHEMAS[schema].interval:
            assert open_at_kill >= 1


def model_values(rows: list[tuple], instrument: bool) -> list[tuple]:
    """The model's rows (tests/model.py) as `csv_values` reads the CLI's output."""

    def px(value: int | None) -> float | None:
        return None if value is None else value / 10**9  # the double nearest the decimal

    out = []
    for ts_recv, ts_event, name, action, side, price, size, seq, flags, levels in rows:
        head = (ts_recv, ts_event, *([name] if instrument else []))
        fields = [action or None, side or None, px(price), size, seq, flags]
        for i in range(0, len(levels), 6):
            bid, ask, *rest = levels[i : i + 6]
            fields += [px(bid), px(ask), *rest]
        out.append((*head, *fields))
    return out


L3_ACTIONS = {Action.ADD: "add", Action.UPDATE: "update", Action.DELETE: "delete",
              Action.TRADE: "trade"}  # fmt: skip


def l3_events(path: Path) -> list[Event]:
    """The events of a valid L3 CSV with an instrument column, in seq order (a plain reading
    of SPEC §1, for the model)."""
    events = []
    with path.open(newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            action, prefix = next((a, p) for a, p in L3_ACTIONS.items() if row[f"{p}_order_id"])
            price = row.get(f"{prefix}_price") or "0"
            events.append(
                Event(
                    int(row["seq_num"]),
                    int(action),
                    row["instrument"],
                    row[f"{prefix}_order_id"],
                    0 if row[f"{prefix}_side"] == "BUY" else 1,
                    int(Decimal(price) * 10**9),
                    int(row.get(f"{prefix}_qty") or 0),
                    row["time"],
                    line,
                    "",
                    True,
                )
            )
    return sorted(events, key=lambda e: e.seq)


class TestAgainstTheModel:
    @pytest.mark.parametrize("schema", ["mbp-10", "tbbo", "bbo-1s"])  # mbp-1: from DBN
    def test_l3_csv_with_dropped_rows(self, tmp_path: Path, schema: str) -> None:
        """Four instruments of deep books, out of order, with rows dropped (so gaps are declared
        and orders go unknown): the CLI's rows are the model's, gaps before the event after
        each lost seq."""
        full, src = tmp_path / "full.csv", tmp_path / "l3.csv"
        generate(full, 4_000, seed=17, window=20, deep=True, instruments=4)
        lines = full.read_text().splitlines(keepends=True)
        src.write_text("".join(line for i, line in enumerate(lines) if i == 0 or i % 97))
        out = tmp_path / "rows.csv"
        convert(src, out, schema, "--max-pending", "50")
        assert Path(f"{out}.rejects.jsonl").read_bytes() == b""  # no row came too late
        events = l3_events(src)
        seqs = {e.seq for e in events}
        gaps = frozenset(e.seq for e in events[1:] if e.seq - 1 not in seqs)
        assert len(gaps) > 30
        expected = model_values(model_schema_rows(schema, events, gaps), instrument=True)
        assert any(r[8] & 4 for r in expected) and any(r[8] & 8 for r in expected)
        assert csv_values(out)[1] == expected

    @pytest.mark.parametrize("schema", ROW_SCHEMAS)
    def test_dbn_with_dropped_records(self, tmp_path: Path, schema: str) -> None:
        """Databento records in venue events, with records dropped (unknown orders), one book
        kept by --instruments: the CLI's rows are the model's."""
        recs = [r for i, r in enumerate(records(6_000, seed=23)) if i % 53]
        src = write_dbn(tmp_path / "mbo.dbn", recs)
        out = tmp_path / "rows.csv"
        convert(src, out, schema, "--instruments", "ESH4")
        actions = {"A": Action.ADD, "M": Action.UPDATE, "C": Action.CANCEL, "R": Action.CLEAR,
                   "T": Action.PRINT, "F": Action.FILL, "N": Action.NONE}  # fmt: skip
        sides = {"B": Side.BUY, "A": Side.SELL, "N": Side.NONE}
        events = [
            Event(
                r.sequence,
                int(actions[r.action]),
                "ESH4" if r.instrument_id == 1001 else str(r.instrument_id),
                str(r.order_id),
                int(sides[r.side]),
                r.price,
                r.size,
                r.ts_recv,
                i,
                "",
                bool(r.flags & 0x80),
                r.ts_recv - 1000,
            )
            for i, r in enumerate(recs, start=1)
        ]
        expected = model_values(model_schema_rows(schema, events, keep={"ESH4"}), instrument=True)
        assert len(expected) > 10 and {r[2] for r in expected} == {"ESH4"}
        assert csv_values(out)[1] == expected
