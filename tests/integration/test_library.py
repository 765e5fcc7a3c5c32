"""The library (SPEC §15) against the CLI: the same rows for every schema and input kind, inside
and outside a running event loop; bad options and inputs raise `l3tol1.Error` with the CLI's
message; bad rows are counted, never raised."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bench.generate_mbo import write as write_mbo

import l3tol1
from tests.conftest import REFERENCE_INPUT, REFERENCE_OUTPUT, add, cli, trade, write_l3

SCHEMAS = ["l1", "mbp-1", "mbp-10", "tbbo", "bbo-1s", "bbo-1m"]
CORES = ["python", "compiled"]


def _core_or_skip(name: str) -> str:
    from l3tol1.core import available

    if name == "compiled" and not available():
        pytest.skip("the compiled core was not built")
    return name


@pytest.fixture(params=CORES)
def core_name(request: pytest.FixtureRequest) -> str:
    return _core_or_skip(request.param)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One input of each kind: the reference CSV, gzip, many instruments, Databento DBN."""
    root = tmp_path_factory.mktemp("inputs")
    gz = root / "l3.csv.gz"
    gz.write_bytes(gzip.compress(REFERENCE_INPUT.read_bytes()))
    dbn = root / "mbo.dbn.zst"
    write_mbo(str(dbn), 3000, seed=7, zstd=True, publishers=(1, 2))
    many = root / "many.csv"
    rows = []
    for i in range(200):
        name = ("ESZ6", "NQZ6", "CL,F7")[i % 3]
        t = f"2021-08-03 01:00:{i // 10:02d}.{i:06d} UTC"
        side, price = ("BUY", f"{100 + i % 7}") if i % 2 else ("SELL", f"{110 + i % 5}")
        rows.append(add(i + 1, f"o{i}", side, price, "5", t) + f',"{name}"')
    rows.append(trade(201, "o1", "BUY", "101", "2", "2021-08-03 01:00:30.000001 UTC") + ",ESZ6")
    from tests.conftest import HEADER

    write_l3(many, rows, header=HEADER + ",instrument")
    return {"csv": REFERENCE_INPUT, "gzip": gz, "instruments": many, "dbn": dbn}


@pytest.mark.parametrize("schema", SCHEMAS)
@pytest.mark.parametrize("kind", ["csv", "gzip", "instruments", "dbn"])
def test_read_gives_the_cli_parquet_rows(
    inputs: dict[str, Path], kind: str, schema: str, tmp_path: Path
) -> None:
    """With the default core (the compiled one in `make test`); the cores agree below."""
    out = tmp_path / "cli.parquet"
    result = cli("-i", inputs[kind], "-o", out, "--schema", schema, "--no-follow")
    assert result.returncode == 0, result.stderr
    table = l3tol1.read(inputs[kind], schema=schema)
    assert table.equals(pq.read_table(out))
    assert table.num_rows > 0


@pytest.mark.parametrize("schema", ["l1", "mbp-10", "bbo-1s"])
def test_convert_writes_the_cli_bytes(
    inputs: dict[str, Path], schema: str, core_name: str, tmp_path: Path
) -> None:
    mine, theirs = tmp_path / "lib.csv", tmp_path / "cli.csv"
    summary = l3tol1.convert(inputs["instruments"], mine, schema=schema, core=core_name)
    result = cli("-i", inputs["instruments"], "-o", theirs, "--schema", schema, "--no-follow")
    assert result.returncode == 0, result.stderr
    assert mine.read_bytes() == theirs.read_bytes()
    assert summary.rows_written == len(mine.read_text().splitlines()) - 1
    assert summary.instruments == 3


@pytest.mark.parametrize("kind", ["instruments", "dbn"])
def test_both_cores_read_the_same_rows(inputs: dict[str, Path], kind: str) -> None:
    _core_or_skip("compiled")
    for schema in SCHEMAS:
        python = l3tol1.read(inputs[kind], schema=schema, core="python")
        assert python.equals(l3tol1.read(inputs[kind], schema=schema, core="compiled")), schema


def test_convert_gives_the_golden_file_and_the_summary(tmp_path: Path) -> None:
    summary = l3tol1.convert(REFERENCE_INPUT, tmp_path / "l1.csv")
    assert (tmp_path / "l1.csv").read_bytes() == REFERENCE_OUTPUT.read_bytes()
    assert summary.events_applied == summary.events_read > 0
    assert summary.rows_written == 19290
    assert summary.rejected == 0


def test_a_file_object_is_read_like_its_path(inputs: dict[str, Path]) -> None:
    for kind in ("csv", "gzip", "dbn"):
        with open(inputs[kind], "rb") as file:
            assert l3tol1.read(file, schema="mbp-1").equals(
                l3tol1.read(inputs[kind], schema="mbp-1")
            )


def test_inside_a_running_event_loop(inputs: dict[str, Path], tmp_path: Path) -> None:
    """As in Jupyter: the call is made from a coroutine of a running loop."""

    async def in_a_notebook() -> tuple[pa.Table, l3tol1.Summary]:
        table = l3tol1.read(inputs["csv"], schema="tbbo")
        return table, l3tol1.convert(inputs["csv"], tmp_path / "l1.csv")

    table, summary = asyncio.run(in_a_notebook())
    assert table.equals(l3tol1.read(inputs["csv"], schema="tbbo"))
    assert (tmp_path / "l1.csv").read_bytes() == REFERENCE_OUTPUT.read_bytes()
    assert summary.rows_written == 19290


def test_iter_batches_holds_a_row_group_at_a_time(inputs: dict[str, Path]) -> None:
    batches = list(l3tol1.iter_batches(inputs["csv"], schema="mbp-1", part_rows=2000))
    assert len(batches) >= 9  # the parts of 2,000 rows, each read by itself
    assert max(b.num_rows for b in batches) <= 2000
    # the values (each batch has its own dictionary of action and side letters)
    whole = l3tol1.read(inputs["csv"], schema="mbp-1")
    assert pa.Table.from_batches(batches).to_pydict() == whole.to_pydict()


def test_bad_rows_are_counted_not_raised(tmp_path: Path) -> None:
    bad = write_l3(
        tmp_path / "bad.csv", [add(1, "a", "BUY", "10", "1"), "x,y", add(2, "b", "SELL", "11", "1")]
    )
    rejects = tmp_path / "rejects.jsonl"
    summary = l3tol1.convert(bad, tmp_path / "out.csv", reject_file=rejects)
    assert summary.rejects == {"wrong field count": 1}
    assert summary.rows_written == 1
    assert '"line": 3' in rejects.read_text() or '"line":3' in rejects.read_text()


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"max_pendin": 3}, l3tol1.ConfigError, "did you mean max_pending"),
        ({"max_pending": -1}, l3tol1.ConfigError, "--max-pending"),
        ({"schema": "mbp-2"}, l3tol1.ConfigError, "mbp-2"),
        ({"follow": True}, l3tol1.ConfigError, "reads the input to its end"),
    ],
)
def test_a_bad_option_raises_the_cli_message(
    options: dict[str, object], error: type[Exception], message: str, tmp_path: Path
) -> None:
    with pytest.raises(error, match=message):
        l3tol1.convert(REFERENCE_INPUT, tmp_path / "out.csv", **options)


def test_an_unreadable_input_raises_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(l3tol1.InputError, match="does not exist"):
        l3tol1.read(tmp_path / "missing.csv")
    result = cli("-i", tmp_path / "missing.csv", "-o", tmp_path / "o.csv", "--no-follow")
    assert "does not exist" in result.stderr
    assert isinstance(l3tol1.InputError("x"), l3tol1.Error)
