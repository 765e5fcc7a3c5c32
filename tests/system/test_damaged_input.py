"""Damaged and surprising input in the file job (issue 17): through the real CLI.

- Damage (compressed data cut short, a DBN file cut inside a record) ends the input where it is:
  every run writes exactly the rows of the undamaged prefix, then exits 2 naming the damage.
- A followed file replaced by a compressed or DBN file (or by one whose header cannot be used)
  ends the input the same way, with a line that says what happened.
- A missing input that is waited for is said at once; a refused input leaves no output behind.

The file source's own handling of a missing input and of a read error, in process, is
unit/test_file_source.py's.
"""

from __future__ import annotations

import bz2
import gzip
import json
import signal
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import zstandard
from bench.generate_mbo import write as write_mbo

from l3tol1.core import available
from tests.conftest import (
    DATA,
    HEADER,
    REFERENCE_INPUT,
    book_rows,
    cli,
    cli_env,
    read_offset,
    start_cli,
    wait_for,
    whole_lines,
    write_l3,
)

CORES = ["python", pytest.param("compiled", marks=pytest.mark.skipif(
    not available(), reason="the compiled core was not built"))]  # fmt: skip
# The lowest seq_num of the reference input: --start-seq with it gives the window's rows.
FIRST_SEQ = min(int(row.split(b",", 1)[0]) for row in REFERENCE_INPUT.read_bytes().splitlines()[1:])


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
        """Convert the undamaged prefix, then the damaged input three times (with
        --checkpoint the second time): each run gives exactly the prefix's rows and rejects,
        exits 2 with the same line naming the input. Returns that line."""
        expected_out = tmp_path / f"expected.{fmt}"
        fresh(expected_out)
        status, _, expected_rejects = run(prefix, expected_out, *args)
        assert status == 0
        expected = rows(expected_out)
        lines = set()
        for attempt in range(3):
            out = tmp_path / f"damaged.{fmt}"
            fresh(out)
            extra = ["--checkpoint", f"{out}.ckpt"] if attempt == 1 else []
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


def exit_of(proc: subprocess.Popen[str], timeout: float = 30) -> tuple[int, str]:
    """The exit status and stderr of a run that must end by itself."""
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
        raise AssertionError(f"the run did not end by itself: {stderr[-2000:]}") from None
    return proc.returncode, stderr


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


# Plain L3 CSV rows, as another kind of file: what a followed path may turn into.
NOT_PLAIN: dict[str, Callable[[bytes], bytes]] = {
    "gzip-compressed": gzip.compress,
    "zstd-compressed": lambda data: zstandard.ZstdCompressor().compress(data),
    "bzip2-compressed": bz2.compress,
    "Databento DBN": lambda _: (DATA / "dbn" / "test_data.mbo.dbn").read_bytes(),
}


class TestFollowedFileChangesKind:
    """A followed file that becomes compressed or DBN ends the run, rows kept (item 9)."""

    def first_file(
        self, tmp_path: Path, core: str = "compiled" if available() else "python"
    ) -> tuple[Path, Path, subprocess.Popen[str], bytes]:
        """Follow a file of rows 1-10 and 12-15 (11 never comes, so 12-15 wait): the run,
        once rows 1-10 are written, and the rows converting that file alone gives."""
        src, out = tmp_path / "feed.csv", tmp_path / "l1.csv"
        write_l3(src, book_rows(1, 10) + book_rows(12, 15))
        alone = tmp_path / "alone.csv"
        args = ["--start-seq", "1", "-t", "0.02", "--gap-timeout", "600", "--core", core]
        assert cli("-i", src, "-o", alone, "--no-follow", *args).returncode == 0
        proc = start_cli("-i", src, "-o", out, *args)
        wait_for(lambda: data_rows(out) == 9, 20, "the rows before the gap")
        return src, out, proc, alone.read_bytes()

    @pytest.mark.parametrize("what", sorted(NOT_PLAIN))
    def test_rotated_to_another_kind(self, tmp_path: Path, what: str) -> None:
        """Rename-and-create where the new file is compressed or DBN: the old file's rows (and
        those waiting for the gap) are written, then exit 2 with one line that says why."""
        src, out, proc, expected = self.first_file(tmp_path)
        src.rename(tmp_path / "feed.csv.1")
        src.write_bytes(NOT_PLAIN[what]((HEADER + "\n" + "\n".join(book_rows(16, 30))).encode()))
        status, stderr = exit_of(proc)
        assert status == 2
        assert stderr.splitlines()[-1] == (
            f"l3tol1: error: input {src} was replaced by a {what} file: a followed file must"
            " stay plain CSV; convert that file in a run of its own (l3tol1 reads a compressed"
            " or DBN file to its end)"
        )
        assert out.read_bytes() == expected

    def test_rewritten_in_place_as_gzip(self, tmp_path: Path) -> None:
        """Truncated and rewritten as gzip (copytruncate, then a compressing writer)."""
        src, out, proc, expected = self.first_file(tmp_path)
        with src.open("r+b") as f:
            f.truncate(0)
        wait_for(lambda: read_offset(proc.pid, src) == 0, 20, "l3tol1 to see the truncation")
        with src.open("ab") as f:
            f.write(gzip.compress(src.with_name("alone.csv").read_bytes()))
        status, stderr = exit_of(proc)
        assert status == 2 and "was rewritten as a gzip-compressed file" in stderr
        assert out.read_bytes() == expected

    def test_awaited_file_appears_compressed_byte_by_byte(
        self, tmp_path: Path, logged: Callable[..., subprocess.Popen[str]]
    ) -> None:
        """A file waited for appears with one byte, a possible start of gzip's magic: the run
        waits for more (no stall, no UTF-8 error), then says what the file is."""
        src, out, log = tmp_path / "feed.csv", tmp_path / "l1.csv", tmp_path / "log"
        proc = logged(log, "-i", src, "-o", out, "--poll-interval", "0.01")
        wait_for(lambda: events(log, "waiting_for_input"), 20, "the wait for the input")
        packed = gzip.compress((HEADER + "\n" + "\n".join(book_rows(1, 9)) + "\n").encode())
        src.write_bytes(packed[:1])
        wait_for(lambda: read_offset(proc.pid, src) == 1, 20, "l3tol1 to read the first byte")
        with src.open("ab") as f:
            f.write(packed[1:])
        assert proc.wait(timeout=30) == 2
        assert log.read_text().splitlines()[-1] == (
            f"l3tol1: error: input {src} appeared as a gzip-compressed file: a followed file"
            " must stay plain CSV; convert that file in a run of its own (l3tol1 reads a"
            " compressed or DBN file to its end)"
        )

    @pytest.mark.parametrize("core", CORES)
    def test_rotated_to_a_file_without_the_columns(self, tmp_path: Path, core: str) -> None:
        """The new file's header lacks a column: the old file's rows are written, then exit 2
        naming the header (the header is the parser's to judge: the run still drains)."""
        src, out, proc, expected = self.first_file(tmp_path, core)
        src.rename(tmp_path / "feed.csv.1")
        src.write_text("seq_num,time\n1,x\n")
        status, stderr = exit_of(proc)
        assert status == 2 and "header lacks required column" in stderr.splitlines()[-1]
        assert out.read_bytes() == expected

    def test_rotated_to_a_file_whose_header_is_not_utf8(self, tmp_path: Path) -> None:
        """The new file's header is not UTF-8: the old file's rows, then exit 2 naming it."""
        src, out, proc, expected = self.first_file(tmp_path)
        src.rename(tmp_path / "feed.csv.1")
        src.write_bytes(b"seq_num,\xff\xfe\n")
        status, stderr = exit_of(proc)
        assert status == 2 and "header (line 1) is not valid UTF-8" in stderr.splitlines()[-1]
        assert out.read_bytes() == expected

    def test_a_path_that_cannot_be_looked_at_is_waited_for(
        self, tmp_path: Path, logged: Callable[..., subprocess.Popen[str]]
    ) -> None:
        """The followed path's directory is replaced by a file (stat fails with ENOTDIR, as it
        fails with EACCES when a directory turns unreadable, which root cannot be shown): said
        once, the run goes on (never a crash, exit 1), and reads the path again when it comes
        back, as a rotated file."""
        folder = tmp_path / "feed"
        folder.mkdir()
        src, out, log = folder / "l3.csv", tmp_path / "l1.csv", tmp_path / "log"
        write_l3(src, book_rows(1, 10))
        proc = logged(log, "-i", src, "-o", out, "-t", "0.02")
        wait_for(lambda: data_rows(out) == 9, 20, "the first file's rows")
        folder.rename(tmp_path / "feed.old")
        folder.write_text("not a directory")
        wait_for(lambda: events(log, "input_inaccessible"), 20, "input_inaccessible")
        assert proc.poll() is None
        folder.unlink()
        folder.mkdir()
        write_l3(src, book_rows(11, 20))
        wait_for(lambda: data_rows(out) == 19, 20, "the new file's rows")
        assert [e["error"] for e in events(log, "input_inaccessible")] == ["Not a directory"]
        assert events(log, "input_accessible")
        proc.send_signal(signal.SIGTERM)
        assert exit_of(proc)[0] == 0

    def test_input_format_csv_still_decompresses(self, tmp_path: Path) -> None:
        """--input-format csv forces CSV over DBN; a gzip-compressed CSV is still read (to its
        end), not followed as raw bytes."""
        src = tmp_path / "l3.csv.gz"
        src.write_bytes(gzip.compress(REFERENCE_INPUT.read_bytes()))
        out = tmp_path / "l1.csv"
        result = cli("-i", src, "-o", out, "--input-format", "csv")
        assert result.returncode == 0, result.stderr
        assert out.read_bytes() == (DATA / "expected_l1_data_v3.1.csv").read_bytes()


class TestMissingAndRefusedInput:
    """A missing input is said to be awaited; a refused one leaves nothing behind (item 13)."""

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

    @pytest.mark.parametrize("fmt", ["csv", "parquet"])
    def test_a_refused_input_leaves_no_output(self, tmp_path: Path, fmt: str) -> None:
        """An input refused before the run begins — DBN of another schema, damaged DBN
        metadata, a compressed CSV or a standard input without the columns, a plain file with
        a header that is not UTF-8 — leaves no output or reject file behind."""
        mbo = (DATA / "dbn" / "test_data.mbo.dbn").read_bytes()
        damaged = bytearray(mbo)
        damaged[20:40] = b"\xff" * 20  # inside the dataset name
        inputs = {
            "mbp1.dbn": (DATA / "dbn" / "test_data.mbp-1.dbn").read_bytes(),
            "meta.dbn": bytes(damaged),
            "cols.csv.gz": gzip.compress(b"seq_num,time\n1,x\n"),
            "utf8.csv": b"seq_num,\xff\n",
        }
        out = tmp_path / f"l1.{fmt}"
        written = []
        for name, data in inputs.items():
            src = tmp_path / name
            src.write_bytes(data)
            written.append(name)
            result = cli("-i", src, "-o", out, "--no-follow")
            assert result.returncode == 2, result.stderr
            assert result.stderr.count("\n") == 1, result.stderr
            assert sorted(p.name for p in tmp_path.iterdir()) == sorted(written), name
        result = subprocess.run(
            [sys.executable, "-m", "l3tol1", "-i", "-", "-o", out],
            input=b"seq_num,time\n1,x\n",
            env=cli_env(),
            capture_output=True,
            timeout=60,
        )
        assert result.returncode == 2
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(inputs)

    @pytest.mark.parametrize("fmt", ["csv", "parquet"])
    def test_outputs_that_were_there_stay_untouched(self, tmp_path: Path, fmt: str) -> None:
        """A refused input leaves the output and reject file of an earlier run as they were."""
        src = write_l3(tmp_path / "l3.csv", book_rows(1, 10))
        out = tmp_path / f"l1.{fmt}"
        assert cli("-i", src, "-o", out, "--no-follow").returncode == 0

        def snapshot() -> dict[str, bytes]:
            files = [out, Path(f"{out}.rejects.jsonl")]
            if out.is_dir():
                files = [*out.iterdir(), files[1]]
            return {str(f): f.read_bytes() for f in files}

        before = snapshot()
        bad = tmp_path / "bad.dbn"
        bad.write_bytes((DATA / "dbn" / "test_data.mbp-1.dbn").read_bytes())
        assert cli("-i", bad, "-o", out, "--no-follow").returncode == 2
        assert snapshot() == before
