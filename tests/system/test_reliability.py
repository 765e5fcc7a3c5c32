"""Exactly-once restart, rotation, truncation and faults (SPEC §7-8), through the real CLI."""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from bench.generate import SEQ_BASE

from tests.conftest import (
    HEADER,
    REFERENCE_INPUT,
    REFERENCE_OUTPUT,
    add,
    book_rows,
    cli,
    read_checkpoint,
    read_offset,
    send_two_signals,
    start_cli,
    wait_for,
    write_l3,
)
from tests.system.kills import batch_args, files_of, kill_after_progress


def finish(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str]:
    """Stop a running CLI with ``sig``; return its exit status and stderr."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        _, stderr = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
        raise AssertionError("the service did not stop within 10 s") from None
    return proc.returncode, stderr


class TestKillNine:
    def test_no_follow_survives_random_kills(
        self, survived: Callable[[str, int], None], tmp_path: Path, stream: tuple
    ) -> None:
        """>= 20 kill -9 at random instants mid-stream: identical output and rejects.

        Each life is killed after its checkpoint moved on, so it always makes progress and
        the count of kills does not depend on the machine's speed; when a run finishes before
        enough kills, it is checked and the stream is run again from scratch."""
        src, expected, expected_rejects = stream
        out, ckpt = tmp_path / "l1.csv", tmp_path / "state.ckpt"
        args = (*batch_args(src, out, ckpt), "--log-level", "warning")
        rng = random.Random(20)
        kills = rounds = 0
        while kills < 20:
            for leftover in (out, Path(f"{out}.rejects.jsonl"), ckpt):
                leftover.unlink(missing_ok=True)
            rounds += 1
            while kill_after_progress(args, ckpt, rng):
                kills += 1
            result = cli(*args, timeout=300)  # the finished run, or one more to the end
            assert result.returncode == 0, result.stderr
            output, rejects = files_of(out)
            assert len(output) == len(expected)
            assert output == expected, "rows lost or duplicated"
            assert rejects == expected_rejects
        survived(f"csv, no-follow ({rounds} run(s))", kills)

    def test_follow_survives_random_kills_while_the_file_grows(
        self, survived: Callable[[str, int], None], tmp_path: Path, stream: tuple
    ) -> None:
        """Following a file that grows during every life, >= 20 kill -9: the batch run's bytes.

        The file is appended to in pieces that cut lines, each while a life runs; the life is
        killed once its checkpoint has moved on. The mangled rows leave permanent gaps, skipped
        when more than --max-pending events wait, as in the batch run."""
        src, expected, expected_rejects = stream
        live, out, ckpt = tmp_path / "live.csv", tmp_path / "l1.csv", tmp_path / "state.ckpt"
        data = src.read_bytes()
        size = len(data) // 50 + 1  # about 30 lives of 1 to 3 pieces, each piece cutting a line
        pieces = [data[i : i + size] for i in range(0, len(data), size)]
        live.write_bytes(b"")
        args = (
            "-i", live, "-o", out, "--follow", "--start-seq", str(SEQ_BASE),
            "--max-pending", "1000", "--gap-timeout", "5", "-t", "0.05",
            "--checkpoint", ckpt, "--checkpoint-interval", "0.05", "--log-level", "warning",
        )  # fmt: skip
        rng = random.Random(21)
        kills = 0

        def grow() -> None:
            with live.open("ab") as f:
                for _ in range(min(len(pieces), rng.randint(1, 3))):
                    f.write(pieces.pop(0))
                    f.flush()

        while pieces:
            # One move: once a life has caught up with the file, its checkpoint rests.
            assert kill_after_progress(args, ckpt, rng, grow, 1), "exited while following"
            kills += 1
        proc = start_cli(*args)
        wait_for(
            lambda: out.exists() and out.stat().st_size >= len(expected), 120, "the full output"
        )
        status, stderr = finish(proc)
        survived("csv, following a growing file", kills)
        assert kills >= 20
        assert status == 0, stderr
        assert files_of(out) == (expected, expected_rejects)

    def test_second_signal_leaves_a_consistent_checkpoint(
        self, tmp_path: Path, stream: tuple
    ) -> None:
        """SIGTERM then SIGINT at once: immediate exit; a restart still finishes exactly."""
        src, expected, expected_rejects = stream
        out, ckpt = tmp_path / "l1.csv", tmp_path / "state.ckpt"
        args = batch_args(src, out, ckpt)
        proc = start_cli(*args)
        wait_for(lambda: ckpt.exists(), 30, "a first checkpoint")
        send_two_signals(proc)
        status, stderr = finish(proc)
        assert status in (128 + signal.SIGINT, 128 + signal.SIGTERM, 0), stderr
        result = cli(*args, timeout=300)
        assert result.returncode == 0, result.stderr
        assert files_of(out) == (expected, expected_rejects)


class TestRestart:
    def test_sigterm_then_restart_continues(self, tmp_path: Path) -> None:
        """A clean stop writes a final checkpoint; the restart adds only what is new."""
        src = write_l3(
            tmp_path / "l3.csv", [add(1, "a", "BUY", "10", "1"), add(2, "b", "SELL", "11", "1")]
        )
        out, ckpt = tmp_path / "l1.csv", tmp_path / "c.ckpt"
        args = ("-i", src, "-o", out, "--start-seq", "1", "-t", "0.02", "--checkpoint", ckpt)
        proc = start_cli(*args)
        wait_for(lambda: out.exists() and out.read_bytes().count(b"\n") == 2, 10, "a row")
        assert finish(proc)[0] == 0
        assert read_checkpoint(ckpt).input.line == 3
        with src.open("a") as f:
            f.write(add(3, "c", "BUY", "10.5", "4") + "\n")
        proc = start_cli(*args)
        wait_for(lambda: out.read_bytes().count(b"\n") == 3, 10, "the new row")
        assert finish(proc)[0] == 0
        assert out.read_text().splitlines()[1:] == [
            "2021-08-03 01:00:00.100000 UTC,10,11,1,1,2",
            "2021-08-03 01:00:00.100000 UTC,10.5,11,4,1,3",
        ]

    def test_waiting_events_survive_a_restart(self, tmp_path: Path) -> None:
        """Events waiting behind a gap at SIGTERM are kept by the checkpoint and used later."""
        src = write_l3(
            tmp_path / "l3.csv", [add(1, "a", "BUY", "10", "1"), add(3, "b", "SELL", "11", "1")]
        )
        out, ckpt = tmp_path / "l1.csv", tmp_path / "c.ckpt"
        args = (
            "-i",
            src,
            "-o",
            out,
            "--start-seq",
            "1",
            "-t",
            "0.02",
            "--checkpoint",
            ckpt,
            "--gap-timeout",
            "60",
        )
        proc = start_cli(*args)
        wait_for(
            lambda: ckpt.exists() and len(read_checkpoint(ckpt).feed.pending) == 1,
            10,
            "a checkpoint with the event waiting behind the gap",
        )
        assert finish(proc)[0] == 0
        assert len(read_checkpoint(ckpt).feed.pending) == 1
        with src.open("a") as f:
            f.write(add(2, "c", "SELL", "12", "1") + "\n")
        proc = start_cli(*args)
        wait_for(lambda: out.read_bytes().count(b"\n") == 3, 10, "rows after the gap filled")
        assert finish(proc)[0] == 0
        assert [line.split(",")[-1] for line in out.read_text().splitlines()[1:]] == ["2", "3"]

    def test_checkpoint_of_another_input_or_output_is_refused(self, tmp_path: Path) -> None:
        """Another input or output with the same checkpoint: exit 2, one line naming both."""
        src = write_l3(tmp_path / "l3.csv", [add(1, "a", "BUY", "10", "1")])
        other = write_l3(tmp_path / "other.csv", [add(1, "a", "BUY", "10", "1")])
        out, ckpt = tmp_path / "l1.csv", tmp_path / "c.ckpt"
        assert cli("-i", src, "-o", out, "--no-follow", "--checkpoint", ckpt).returncode == 0
        result = cli("-i", other, "-o", out, "--no-follow", "--checkpoint", ckpt)
        assert result.returncode == 2
        assert result.stderr.splitlines() == [
            f"l3tol1: error: checkpoint {ckpt} belongs to input {src}, not {other}"
        ]
        result = cli("-i", src, "-o", tmp_path / "x.csv", "--no-follow", "--checkpoint", ckpt)
        assert result.returncode == 2 and "belongs to output" in result.stderr

    def test_leftover_temp_file_is_removed_and_logged(self, tmp_path: Path) -> None:
        """A temp file left by a crash mid-write is discarded; the real checkpoint stands."""
        src = write_l3(tmp_path / "l3.csv", [add(1, "a", "BUY", "10", "1")])
        out, ckpt = tmp_path / "l1.csv", tmp_path / "c.ckpt"
        assert cli("-i", src, "-o", out, "--no-follow", "--checkpoint", ckpt).returncode == 0
        Path(f"{ckpt}.tmp").write_text("{half a checkp")
        result = cli("-i", src, "-o", out, "--no-follow", "--checkpoint", ckpt)
        assert result.returncode == 0, result.stderr
        assert "checkpoint_temp_removed" in result.stderr
        assert not Path(f"{ckpt}.tmp").exists()


class TestRotation:
    def start(self, tmp_path: Path, *extra: str) -> tuple[Path, Path, subprocess.Popen[str]]:
        src, out = tmp_path / "feed.csv", tmp_path / "l1.csv"
        proc = start_cli(
            "-i", src, "-o", out, "--start-seq", "1", "-t", "0.02", "--gap-timeout", "60", *extra
        )
        return src, out, proc

    @staticmethod
    def rows(out: Path) -> list[str]:
        return [line.split(",")[-1] for line in out.read_text().splitlines()[1:]]

    @staticmethod
    def book_rows(first: int, last: int) -> list[str]:
        return book_rows(first, last)

    def test_rename_and_create(self, tmp_path: Path) -> None:
        """Old file read to its end (even lines added after the rename), then the new one."""
        src, out, proc = self.start(tmp_path)
        write_l3(src, self.book_rows(1, 10))
        wait_for(lambda: out.exists() and len(self.rows(out)) == 9, 10, "first file")
        src.rename(tmp_path / "feed.csv.1")
        with (tmp_path / "feed.csv.1").open("a") as f:
            f.write(self.book_rows(11, 12)[0] + "\n" + self.book_rows(12, 12)[0])  # no newline
        write_l3(src, self.book_rows(13, 20))
        wait_for(lambda: len(self.rows(out)) == 19, 10, "both files")
        status, stderr = finish(proc)
        assert status == 0 and "input_rotated" in stderr
        assert self.rows(out) == [str(s) for s in range(2, 21)]

    def test_copytruncate(self, tmp_path: Path) -> None:
        """The file shrinks below the read offset: read again from its start."""
        src, out, proc = self.start(tmp_path)
        write_l3(src, self.book_rows(1, 10))
        wait_for(lambda: out.exists() and len(self.rows(out)) == 9, 10, "first part")
        shutil.copy(src, tmp_path / "feed.csv.1")
        with src.open("r+") as f:
            f.truncate(0)
        # Grown again only once l3tol1 went back to the start (else: the next test's case).
        wait_for(lambda: read_offset(proc.pid, src) == 0, 10, "l3tol1 to see the truncation")
        with src.open("a") as f:
            f.write("\n".join([HEADER, *self.book_rows(11, 20)]) + "\n")
        wait_for(lambda: len(self.rows(out)) == 19, 10, "after truncation")
        status, stderr = finish(proc)
        assert status == 0 and "input_truncated" in stderr
        assert self.rows(out) == [str(s) for s in range(2, 21)]

    def test_truncate_and_regrow_between_looks(self, tmp_path: Path) -> None:
        """Truncated and rewritten past the old offset at once: the changed head tells."""
        src, out, proc = self.start(tmp_path, "--poll-interval", "0.3")
        write_l3(src, self.book_rows(1, 4))
        wait_for(lambda: out.exists() and len(self.rows(out)) == 3, 10, "first part")
        write_l3(src, self.book_rows(5, 20))  # open("w"): truncate and regrow in one go
        wait_for(lambda: len(self.rows(out)) == 19, 10, "after truncation")
        status, stderr = finish(proc)
        assert status == 0 and "input_truncated" in stderr

    def test_deleted_then_recreated(self, tmp_path: Path) -> None:
        """Deletion is waited out; the re-created file is read from its start."""
        src, out, proc = self.start(tmp_path)
        write_l3(src, self.book_rows(1, 10))
        wait_for(lambda: out.exists() and len(self.rows(out)) == 9, 10, "first file")
        src.unlink()
        write_l3(src, self.book_rows(11, 20))
        wait_for(lambda: len(self.rows(out)) == 19, 10, "re-created file")
        status, _ = finish(proc)
        assert status == 0
        assert self.rows(out) == [str(s) for s in range(2, 21)]

    def test_rotation_while_stopped_resumes_old_file_then_new(self, tmp_path: Path) -> None:
        """A checkpoint taken before a rotation resumes the renamed file, then the new one."""
        ckpt = tmp_path / "c.ckpt"
        src, out, proc = self.start(tmp_path, "--checkpoint", str(ckpt))
        write_l3(src, self.book_rows(1, 10))
        wait_for(lambda: out.exists() and len(self.rows(out)) == 9, 10, "first file")
        assert finish(proc)[0] == 0
        src.rename(tmp_path / "feed.csv.1")
        with (tmp_path / "feed.csv.1").open("a") as f:
            f.write("\n".join(self.book_rows(11, 12)) + "\n")
        write_l3(src, self.book_rows(13, 20))
        _, _, proc = self.start(tmp_path, "--checkpoint", str(ckpt))
        wait_for(lambda: len(self.rows(out)) == 19, 10, "both files")
        status, stderr = finish(proc)
        assert status == 0, stderr
        assert self.rows(out) == [str(s) for s in range(2, 21)]

    @pytest.mark.parametrize("how", ["new inode", "same inode"])
    def test_file_replaced_while_stopped_is_refused(self, tmp_path: Path, how: str) -> None:
        """A checkpoint never applies to a different file, even one that reuses the inode."""
        ckpt = tmp_path / "c.ckpt"
        src, out, proc = self.start(tmp_path, "--checkpoint", str(ckpt))
        write_l3(src, self.book_rows(1, 10))
        wait_for(lambda: out.exists() and len(self.rows(out)) == 9, 10, "first file")
        assert finish(proc)[0] == 0
        before = out.read_bytes()
        if how == "new inode":
            src.unlink()
            write_l3(src, self.book_rows(101, 120))
        else:
            with src.open("r+") as f:  # same inode, other content
                f.seek(0)
                f.write(src.read_text().replace(",o1,", ",x1,"))
        result = cli(
            "-i", src, "-o", out, "--checkpoint", ckpt, "--start-seq", "1", "--gap-timeout", "60"
        )
        assert result.returncode == 2
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and "replaced while l3tol1 was stopped" in lines[0]
        assert out.read_bytes() == before


class TestFaults:
    def test_output_disk_full(self, tmp_path: Path) -> None:
        """A write that fails (file-size limit) exits 1 with a clear line; the checkpoint never
        claims a row that is not in the output, and a later run finishes exactly."""
        out, ckpt = tmp_path / "l1.csv", tmp_path / "c.ckpt"
        args = (
            "-i",
            REFERENCE_INPUT,
            "-o",
            out,
            "--no-follow",
            "--checkpoint",
            ckpt,
            "--start-seq",
            "1627942268920653171",
            "-b",
            "100",
            "--checkpoint-interval",
            "0",
        )

        def limit_file_size() -> None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of a kill

        result = cli(*args, preexec_fn=limit_file_size)
        assert result.returncode == 1, result.stderr
        error = next(json.loads(x) for x in result.stderr.splitlines() if '"failed"' in x)
        assert error["error"].startswith(f"cannot write {out}: File too large")
        size = read_checkpoint(ckpt).output.file.size
        expected = REFERENCE_OUTPUT.read_bytes()
        assert 0 < size <= out.stat().st_size
        assert out.read_bytes()[:size] == expected[:size]
        assert result.stderr.splitlines()[-1].startswith(f"l3tol1: error: cannot write {out}")
        result = cli(*args)
        assert result.returncode == 0, result.stderr
        assert out.read_bytes() == expected

    def test_output_is_a_directory(self, tmp_path: Path) -> None:
        """An output that cannot be opened is a configuration error naming it."""
        result = cli("-i", REFERENCE_INPUT, "-o", tmp_path, "--no-follow")
        assert result.returncode == 2
        assert result.stderr.splitlines() == [
            f"l3tol1: error: --output-file {tmp_path} is a directory"
        ]

    @pytest.mark.parametrize("follow", ["--follow", "--no-follow"])
    def test_unreadable_input(self, tmp_path: Path, follow: str) -> None:
        """An input that cannot be read is named in one clear line, exit 2."""
        result = cli("-i", tmp_path, "-o", tmp_path / "o.csv", follow)
        assert result.returncode == 2, result.stderr
        assert f"input {tmp_path} is a directory, not a file" in result.stderr.splitlines()[-1]

    @pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
    def test_input_without_read_permission(self, tmp_path: Path) -> None:
        """Permission denied on the input is named (testable only as a non-root user)."""
        src = write_l3(tmp_path / "l3.csv", [add(1, "a", "BUY", "10", "1")])
        src.chmod(0)
        result = cli("-i", src, "-o", tmp_path / "o.csv", "--no-follow")
        assert result.returncode == 2
        assert result.stderr.splitlines() == [
            f"l3tol1: error: cannot read input {src}: Permission denied"
        ]
