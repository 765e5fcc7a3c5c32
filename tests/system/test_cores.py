"""The two cores through the real CLI (issue 11): which one runs, the same bytes from each (on
whole feeds, and on damaged input), and checkpoints that a restart on the other core carries on
from. The cores' classes compared in process are integration/test_core_differential.py's."""

from __future__ import annotations

import gzip
import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
from bench.generate import generate
from bench.generate_mbo import write as write_mbo

from l3tol1.core import available
from tests.conftest import REFERENCE_INPUT, ROOT, cli, cli_env
from tests.system.kills import batch_args, files_of, kill_after_progress, make_stream

GOLDEN_IN = ROOT / "data" / "l3_data_v3.1.csv"
GOLDEN_OUT = ROOT / "data" / "expected_l1_data_v3.1.csv"
needs_compiled = pytest.mark.skipif(not available(), reason="the compiled core was not built")


def start_line(stderr: str) -> dict:
    """The JSON start line of a run's log."""
    for line in stderr.splitlines():
        record = json.loads(line)
        if record["event"] == "start":
            return record
    raise AssertionError(f"no start line in {stderr!r}")


def golden(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Convert the reference file; check the bytes; the core the start line names."""
    out = tmp_path / "l1.csv"
    result = cli("-i", GOLDEN_IN, "-o", out, "--no-follow", "--log-format", "json", *args, env=env)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == GOLDEN_OUT.read_bytes()
    return str(start_line(result.stderr)["core"])


class TestWhichCore:
    @needs_compiled
    def test_compiled_by_default(self, tmp_path: Path) -> None:
        """Built, the compiled core runs unless asked otherwise; the start line says so."""
        env = {k: v for k, v in cli_env().items() if k != "L3TOL1_CORE"}
        assert golden(tmp_path, env=env) == "compiled"

    def test_python_forced_by_option_or_variable(self, tmp_path: Path) -> None:
        """`--core python` or L3TOL1_CORE=python runs the reference."""
        assert golden(tmp_path, "--core", "python") == "python"
        assert golden(tmp_path, env=cli_env(L3TOL1_CORE="python")) == "python"

    def test_without_the_compiled_library(self, tmp_path: Path) -> None:
        """An install where nothing was compiled runs the Python core; asking for the compiled
        one is a configuration error (exit 2, one line)."""
        tree = tmp_path / "site"
        shutil.copytree(
            ROOT / "service" / "l3tol1",
            tree / "l3tol1",
            ignore=shutil.ignore_patterns("*.so", "__pycache__"),
        )
        env = cli_env(PYTHONPATH=str(tree))
        assert golden(tmp_path, env=env) == "python"
        result = cli(
            "-i", GOLDEN_IN, "-o", tmp_path / "x.csv", "--no-follow", "--core", "compiled", env=env
        )
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and "compiled core" in result.stderr
        assert not (tmp_path / "x.csv").exists()


@pytest.fixture(scope="module")
def feed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60k events of 25 instruments, out of order, with bad, duplicate and late rows."""
    folder = tmp_path_factory.mktemp("cores")
    make_stream(folder / "plain.csv", 60_000, seed=5)
    many = folder / "many.csv"
    generate(many, 60_000, seed=6, window=50, instruments=25)
    lines = many.read_bytes().split(b"\n")
    for i in range(997, len(lines) - 1, 997):  # an unknown side now and then
        lines[i] = lines[i].replace(b",BUY,", b",BYU,", 1).replace(b",SELL,", b",SEL,", 1)
    many.write_bytes(b"\n".join(lines))
    return folder


@needs_compiled
class TestSameBytes:
    @pytest.mark.parametrize("name", ["plain.csv", "many.csv"])
    def test_outputs_rejects_and_counters(self, tmp_path: Path, feed: Path, name: str) -> None:
        """One feed through each core: identical L1 file, reject file and final counters."""
        results = []
        for core in ("python", "compiled"):
            out = tmp_path / f"{core}.csv"
            result = cli("-i", feed / name, "-o", out, "--no-follow", "--max-pending", "1000",
                         "--log-format", "json", "--core", core, timeout=300)  # fmt: skip
            assert result.returncode == 0, result.stderr
            summary = json.loads(result.stderr.splitlines()[-1])
            assert summary["event"] == "summary"
            timing = ("timestamp", "elapsed_s", "events_per_s", "seconds_since_last_input")
            counters = {k: v for k, v in summary.items() if k not in timing}
            results.append((*files_of(out), counters))
        assert results[0][0].count(b"\n") > 5_000 and results[0][1].count(b"\n") > 10
        assert results[1] == results[0]

    @pytest.mark.parametrize(("first", "then"), [("compiled", "python"), ("python", "compiled")])
    def test_restart_on_the_other_core(
        self, tmp_path: Path, feed: Path, first: str, then: str
    ) -> None:
        """kill -9 on one core, carry on from its checkpoint on the other: the bytes of an
        uninterrupted run."""
        src = feed / "plain.csv"
        expected = tmp_path / "expected.csv"
        assert (
            cli("-i", src, "-o", expected, "--no-follow", "--max-pending", "1000").returncode == 0
        )
        out, ckpt = tmp_path / "l1.csv", tmp_path / "state.ckpt"
        rng = random.Random(3)
        while True:  # start over in the rare case that the first life ended before its kill
            for leftover in (out, Path(f"{out}.rejects.jsonl"), ckpt):
                leftover.unlink(missing_ok=True)
            if kill_after_progress((*batch_args(src, out, ckpt), "--core", first), ckpt, rng):
                break
        result = cli(*batch_args(src, out, ckpt), "--core", then, "--log-format", "json")
        assert result.returncode == 0, result.stderr
        assert start_line(result.stderr)["core"] == then
        assert files_of(out) == files_of(expected)


@needs_compiled
class TestDamagedInputThroughTheCli:
    """Damaged input (issue 17): the real CLI on each core, on the same damaged files, gives
    the same rows, rejects, exit status and error line."""

    def outcome(self, src: Path, out: Path, core: str, *args: str) -> tuple[Any, ...]:
        result = cli("-i", src, "-o", out, "--no-follow", "--core", core, *args)
        rejects = Path(f"{out}.rejects.jsonl").read_bytes()
        return result.returncode, result.stderr.splitlines()[-1], out.read_bytes(), rejects

    def test_both_cores_agree(self, tmp_path: Path) -> None:
        """A gzip file cut short (with and without --start-seq, and with rows that are
        rejected) and a DBN file cut inside a record."""
        text = REFERENCE_INPUT.read_bytes().splitlines(keepends=True)
        for i in range(5, len(text), 997):  # some bad rows among the good ones
            text[i] = b"junk," + text[i]
        packed = gzip.compress(b"".join(text))
        mbo = tmp_path / "mbo.dbn"
        write_mbo(str(mbo), 3000, seed=5)
        cases = [
            ("cut.gz", packed[: len(packed) // 3], []),
            ("cut.gz", packed[: len(packed) * 2 // 3], ["--start-seq", "1627942268920653171"]),
            ("cut.dbn", mbo.read_bytes()[:-29], ["--instruments", "ESH4"]),
        ]
        for name, data, args in cases:
            src = tmp_path / name
            src.write_bytes(data)
            python = self.outcome(src, tmp_path / "python.csv", "python", *args)
            compiled = self.outcome(src, tmp_path / "compiled.csv", "compiled", *args)
            assert python[0] == 2 and python[2].count(b"\n") > 50, python[1]
            assert compiled == python, name


@needs_compiled
class TestSchemasThroughTheCli:
    """The output schemas (issue 19) through the real CLI on each core: the same CSV bytes
    and Parquet values, and a kill -9 on one core carried on by the other."""

    @pytest.mark.parametrize(
        ("name", "schema", "fmt"),
        [
            ("plain.csv", "mbp-1", "csv"),
            ("many.csv", "mbp-10", "csv"),
            ("many.csv", "bbo-1s", "csv"),
            ("many.csv", "tbbo", "parquet"),
            ("mbo.dbn", "mbp-1", "csv"),
            ("mbo.dbn", "bbo-1m", "parquet"),
        ],
    )
    def test_both_cores_write_the_same(
        self, tmp_path: Path, feed: Path, name: str, schema: str, fmt: str
    ) -> None:
        src = feed / name
        if name == "mbo.dbn" and not src.exists():
            write_mbo(str(src), 20_000, seed=7)
        written = []
        for core in ("python", "compiled"):
            out = tmp_path / f"{core}.{fmt}"
            result = cli("-i", src, "-o", out, "--no-follow", "--max-pending", "1000",
                         "--schema", schema, "--core", core, timeout=300)  # fmt: skip
            assert result.returncode == 0, result.stderr
            if fmt == "csv":
                written.append(out.read_bytes())
            else:
                import pyarrow.parquet as pq

                written.append(pq.read_table(out).to_pylist())
        assert len(written[0]) > 100
        assert written[1] == written[0]

    @pytest.mark.parametrize(("first", "then"), [("compiled", "python"), ("python", "compiled")])
    def test_restart_on_the_other_core(
        self, tmp_path: Path, feed: Path, first: str, then: str
    ) -> None:
        """mbp-1 rows: kill -9 on one core, carry on from its checkpoint on the other: the bytes
        of an uninterrupted run."""
        src = feed / "many.csv"
        schema = ("--schema", "mbp-1")
        expected = tmp_path / "expected.csv"
        args = ("-i", src, "-o", expected, "--no-follow", "--max-pending", "1000", *schema)
        assert cli(*args).returncode == 0
        out, ckpt = tmp_path / "rows.csv", tmp_path / "state.ckpt"
        rng = random.Random(4)
        while True:  # start over in the rare case that the first life ended before its kill
            for leftover in (out, Path(f"{out}.rejects.jsonl"), ckpt):
                leftover.unlink(missing_ok=True)
            if kill_after_progress((*batch_args(src, out, ckpt), *schema, "--core", first),
                                   ckpt, rng):  # fmt: skip
                break
        result = cli(*batch_args(src, out, ckpt), *schema, "--core", then)
        assert result.returncode == 0, result.stderr
        assert files_of(out) == files_of(expected)
