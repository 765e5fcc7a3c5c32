"""Damaged and surprising input in the file job (issue 17): through the real CLI.

- Damage (compressed data cut short, a DBN file cut inside a record) ends the input where it is:
  every run writes exactly the rows of the undamaged prefix, then exits 2 naming the damage.
- A missing input that is waited for is said at once.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import signal
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import zstandard
from bench.generate_mbo import write as write_mbo

from l3tol1.core import available
from tests.conftest import REFERENCE_INPUT, book_rows, cli, cli_env, wait_for, write_l3

CORES = ["python", pytest.param("compiled", marks=pytest.mark.skipif(
    not available(), reason="the compiled core was not built"))]  # fmt: skip
# The lowest seq_num of the reference input: --start-seq with it gives the window's rows.
FIRST_SEQ = min(int(row.split(b",", 1)[0]) for row in REFERENCE_INPUT.read_bytes().splitlines()[1:])


def whole_lines(data: bytes) -> bytes:
    """``data`` up to and with its last newline."""
    return data[: data.rfind(b"\n") + 1]


def gunzip_prefix(damaged: bytes) -> bytes:
    """What a gzip stream cut short decodes to before its end (zlib, not l3tol1's reader)."""
    return zlib.decompressobj(wbits=31).decompress(damaged)


def zstd_blocks(data: bytes) -> bytes:
    """``data`` as one zstd frame of many small blocks (a cut loses one block, not all)."""
    compressor = zstandard.ZstdCompressor(level=1).compressobj()
    out = [
        compressor.compress(data[i : i + 4096])
        + compressor.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        for i in range(0, len(data), 4096)
    ]
    return b"".join(out) + compressor.flush()


def run(src: Path, out: Path, *args: str) -> tuple[int, str, list[str]]:
    """Convert ``src`` to ``out``: (exit status, the last stderr line, the reject lines)."""
    result = cli("-i", src, "-o", out, "--no-follow", *args)
    rejects = Path(f"{out}.rejects.jsonl").read_text().splitlines()
    last = result.stderr.splitlines()[-1] if result.stderr else ""
    return result.returncode, last, rejects


def rows(out: Path) -> object:
    """The rows of a CSV file (bytes), or of a Parquet dataset (its part names, its table)."""
    if out.is_dir():
        parts = sorted(p.name for p in out.glob("part-*.parquet"))
        return parts, pq.read_table(out).to_pylist()
    return out.read_bytes()


def fresh(out: Path) -> None:
    """Remove ``out`` (file or dataset), its reject file and its checkpoint."""
    for path in (out, Path(f"{out}.rejects.jsonl"), Path(f"{out}.ckpt")):
        if path.is_dir():
            for child in path.iterdir():
                child.unlink()
            path.rmdir()
        elif path.exists():
            path.unlink()


class TestDamageEndsTheInput:
    """Damage is the end of the input for the rows before it (issue 17, item 3)."""

    def check_like_prefix(
        self, tmp_path: Path, damaged: Path, prefix: Path, args: list[str], fmt: str
    ) -> str:
        """Convert the undamaged prefix, then the damaged input twice (without, then with
        --checkpoint): each run gives exactly the prefix's rows and rejects, exits 2 with one
        line naming the input. Returns that line."""
        expected_out = tmp_path / f"expected.{fmt}"
        fresh(expected_out)
        status, _, expected_rejects = run(prefix, expected_out, *args)
        assert status == 0
        expected = rows(expected_out)
        lines = set()
        for attempt in range(2):
            out = tmp_path / f"damaged.{fmt}"
            fresh(out)
            extra = ["--checkpoint", f"{out}.ckpt"] if attempt % 2 else []
            status, last, rejects = run(damaged, out, *args, *extra)
            assert status == 2, last
            assert rows(out) == expected, f"attempt {attempt} ({extra}): other rows"
            assert rejects == expected_rejects
            lines.add(last)
        assert len(lines) == 1
        line = lines.pop()
        assert line.startswith("l3tol1: error: ") and str(damaged) in line
        return line

    @pytest.mark.parametrize("core", CORES)
    @pytest.mark.parametrize("fmt", ["csv", "parquet"])
    def test_truncated_gzip(self, tmp_path: Path, core: str, fmt: str) -> None:
        """A gzip file cut short at several points, with the start-up window and with
        --start-seq: the rows of the lines decoded before the cut, every run; the line cut in
        two is named in the error, never applied."""
        packed = gzip.compress(REFERENCE_INPUT.read_bytes())
        for fraction, start in ((0.03, None), (0.5, FIRST_SEQ), (0.97, None), (0.6, FIRST_SEQ)):
            args = ["--core", core] + ([] if start is None else ["--start-seq", str(start)])
            damaged = tmp_path / "cut.gz"
            damaged.write_bytes(packed[: int(len(packed) * fraction)])
            decoded = gunzip_prefix(damaged.read_bytes())
            prefix = tmp_path / "prefix.csv"
            prefix.write_bytes(whole_lines(decoded))
            line = self.check_like_prefix(tmp_path, damaged, prefix, args, fmt)
            whole = decoded.count(b"\n")
            assert f"damaged gzip data after line {whole} (" in line
            partial = len(decoded) - len(whole_lines(decoded))
            assert partial
            assert line.endswith(
                f"the {partial} bytes of line {whole + 1} read before it are not converted"
            )

    @pytest.mark.parametrize("core", CORES)
    @pytest.mark.parametrize("fmt", ["csv", "parquet"])
    def test_dbn_cut_inside_a_record(self, tmp_path: Path, core: str, fmt: str) -> None:
        """A DBN file cut inside a record, plain or zstd-compressed (in small blocks, cut
        inside one): the rows of the records before it."""
        full = tmp_path / "full.dbn"
        write_mbo(str(full), 6000, seed=3)
        data = full.read_bytes()
        metadata_length = 8 + int.from_bytes(data[4:8], "little")
        packed = zstd_blocks(data)
        for zstd, cut in ((False, metadata_length + 56 * 100 + 17), (True, len(packed) // 2)):
            damaged = tmp_path / ("cut.dbn.zst" if zstd else "cut.dbn")
            if zstd:
                damaged.write_bytes(packed[:cut])
                decoded = (
                    zstandard.ZstdDecompressor().decompressobj().decompress(damaged.read_bytes())
                )
            else:
                damaged.write_bytes(data[:cut])
                decoded = data[:cut]
            records = (len(decoded) - metadata_length) // 56
            assert records > 50 and (len(decoded) - metadata_length) % 56
            prefix = tmp_path / "prefix.dbn"
            prefix.write_bytes(data[: metadata_length + records * 56])
            line = self.check_like_prefix(tmp_path, damaged, prefix, ["--core", core], fmt)
            assert f"record {records + 1}" in line

    def test_a_restart_from_the_checkpoint_changes_nothing(self, tmp_path: Path) -> None:
        """The checkpoint saved at the damage resumes at it: a restart on the same damaged
        input fails the same way and leaves the output and reject file as they were."""
        packed = gzip.compress(REFERENCE_INPUT.read_bytes())
        damaged = tmp_path / "cut.gz"
        damaged.write_bytes(packed[: len(packed) // 2])
        out = tmp_path / "l1.csv"
        args = ["--checkpoint", f"{out}.ckpt"]
        first = run(damaged, out, *args)
        written = out.read_bytes(), Path(f"{out}.rejects.jsonl").read_bytes()
        assert first[0] == 2
        assert run(damaged, out, *args) == first
        assert (out.read_bytes(), Path(f"{out}.rejects.jsonl").read_bytes()) == written

    def test_the_summary_says_the_input_ended_on_an_error(self, tmp_path: Path) -> None:
        """The summary line is logged after the rows are written, with `stopped_by`
        input_error, and the last line on stderr is the error."""
        packed = gzip.compress(REFERENCE_INPUT.read_bytes())
        damaged = tmp_path / "cut.gz"
        damaged.write_bytes(packed[: len(packed) // 2])
        result = cli("-i", damaged, "-o", tmp_path / "l1.csv", "--log-format", "json")
        assert result.returncode == 2
        records = [json.loads(line) for line in result.stderr.splitlines()[:-1]]
        summary = next(r for r in records if r["event"] == "summary")
        assert summary["stopped_by"] == "input_error"
        assert summary["rows_written"] == len((tmp_path / "l1.csv").read_text().splitlines()) - 1
        failed = next(r for r in records if r["event"] == "failed")
        assert result.stderr.splitlines()[-1] == f"l3tol1: error: {failed['error']}"


@pytest.fixture
def logged() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start the CLI with its log going to a file (read while it runs); killed at the end."""
    procs: list[subprocess.Popen[str]] = []

    def start(log: Path, *args: str | Path) -> subprocess.Popen[str]:
        with log.open("w") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "l3tol1", *map(str, args), "--log-format", "json"],
                env=cli_env(),
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                text=True,
            )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def events(log: Path, name: str) -> list[dict]:
    """The log records of event ``name`` so far (JSON lines)."""
    found = []
    for line in log.read_text().splitlines():
        if line.startswith("{") and line.endswith("}"):
            record = json.loads(line)
            if record["event"] == name:
                found.append(record)
    return found


def data_rows(out: Path) -> int:
    return len(out.read_text().splitlines()) - 1 if out.exists() else 0


class TestMissingAndRefusedInput:
    """A missing input is said to be awaited (item 13)."""

    def test_waiting_for_a_missing_input_is_said_at_once(
        self, tmp_path: Path, logged: Callable[..., subprocess.Popen[str]]
    ) -> None:
        """Following a path that does not exist logs `waiting_for_input` with the path and a
        hint at once; the file, once there, is read as usual."""
        src, out, log = tmp_path / "feed.csv", tmp_path / "l1.csv", tmp_path / "log"
        proc = logged(log, "-i", src, "-o", out, "--start-seq", "1", "-t", "0.02")
        wait_for(lambda: events(log, "waiting_for_input"), 20, "the wait to be logged")
        (note,) = events(log, "waiting_for_input")
        assert note["path"] == str(src) and note["waited_s"] == 0
        assert note["hint"] == (
            f"input {src} does not exist yet; l3tol1 waits for it (--follow); use --no-follow"
            " to fail instead"
        )
        write_l3(src, book_rows(1, 10))
        wait_for(lambda: data_rows(out) == 9, 20, "the rows of the file once it is there")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0

    def test_the_wait_is_said_again_less_and_less_often(self, tmp_path: Path) -> None:
        """Still missing, the input is logged again after ``waiting_note`` seconds, then after
        twice that, and so on (never one line per poll)."""
        import anyio
        from structlog.testing import capture_logs

        from l3tol1.sources.file import FileSource

        source = FileSource(
            tmp_path / "later.csv", follow=True, poll_interval=0.005, waiting_note=0.2
        )

        async def read() -> None:
            async with contextlib.aclosing(source.chunks()) as chunks:
                async for _ in chunks:
                    raise AssertionError("nothing to read")

        async def wait_for_notes(logs: list[dict]) -> list[float]:
            async with anyio.create_task_group() as group:
                group.start_soon(read)
                with anyio.fail_after(20):
                    while len(notes := [r for r in logs if r["event"] == "waiting_for_input"]) < 4:
                        await anyio.sleep(0.01)
                group.cancel_scope.cancel()
            await source.aclose()
            return [note["waited_s"] for note in notes]

        with capture_logs() as logs:
            waited = anyio.run(wait_for_notes, logs)
        assert waited[0] == 0
        gaps = [b - a for a, b in pairwise(waited)]
        assert all(later >= 1.5 * earlier for earlier, later in pairwise(gaps))
