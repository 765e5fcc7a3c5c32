"""Faults around a run, through the real CLI: a disk that fills, an input or output that cannot
be used, a log reader that goes away; paths that collide with the input or with another run's.
Each is one clear line and the right exit status (SPEC §6); nothing is destroyed or mixed."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import (
    REFERENCE_INPUT,
    REFERENCE_OUTPUT,
    add,
    book_rows,
    cli,
    cli_env,
    finish,
    one_error_line,
    read_checkpoint,
    rows_of,
    start_cli,
    wait_for,
    write_l3,
)

GOLDEN = REFERENCE_OUTPUT.read_bytes()


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

    def test_a_log_reader_that_goes_away_costs_no_row(self, tmp_path: Path) -> None:
        """stderr's reader closes after the first line: the run still ends whole, exit 0."""
        out = tmp_path / "o.csv"
        proc = subprocess.Popen(
            [sys.executable, "-m", "l3tol1", "-i", REFERENCE_INPUT, "-o", out, "--no-follow",
             "--log-level", "debug"],
            env=cli_env(), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        assert proc.stderr is not None
        proc.stderr.readline()
        proc.stderr.close()
        assert proc.wait(timeout=60) == 0
        assert out.read_bytes() == GOLDEN


class TestNeverDestroyOrMix:
    def test_output_equal_to_input_is_refused(self, tmp_path: Path) -> None:
        """The input is never overwritten."""
        src = write_l3(tmp_path / "l3.csv", [add(1, "a", "BUY", "10", "1")])
        before = src.read_bytes()
        result = cli("-i", src, "-o", src, "--no-follow")
        assert result.returncode == 2 and "same file" in result.stderr
        assert src.read_bytes() == before

    @pytest.mark.parametrize("link", ["hard link", "symlink"])
    def test_output_that_is_the_input_under_another_name(self, tmp_path: Path, link: str) -> None:
        """The same file under another name is still the input: refused, the input intact."""
        src = write_l3(tmp_path / "l3.csv", book_rows(1, 3))
        before = src.read_bytes()
        alias = tmp_path / "alias.csv"
        (os.link if link == "hard link" else os.symlink)(src, alias)
        line = one_error_line(cli("-i", src, "-o", alias, "--no-follow"))
        assert "name the same file" in line
        assert src.read_bytes() == before

    def test_a_bad_reject_file_leaves_the_output_alone(self, tmp_path: Path) -> None:
        """Everything is checked before anything is touched: an existing output keeps its rows."""
        out = tmp_path / "l1.csv"
        out.write_text("precious\n")
        (tmp_path / "dir").mkdir()
        line = one_error_line(
            cli("-i", REFERENCE_INPUT, "-o", out, "--no-follow", "--reject-file", tmp_path / "dir")
        )
        assert "is a directory" in line
        assert out.read_text() == "precious\n"

    def test_a_bad_checkpoint_directory_is_found_first(self, tmp_path: Path) -> None:
        """A checkpoint in a missing directory fails at once, before the input is converted."""
        out = tmp_path / "l1.csv"
        out.write_text("precious\n")
        started = time.monotonic()
        line = one_error_line(
            cli(
                "-i",
                REFERENCE_INPUT,
                "-o",
                out,
                "--no-follow",
                "--checkpoint",
                tmp_path / "no" / "c",
            )
        )
        assert "cannot use checkpoint" in line and "No such file or directory" in line
        assert out.read_text() == "precious\n"
        assert time.monotonic() - started < 10

    @pytest.mark.parametrize("shared", ["output", "reject file", "checkpoint"])
    def test_a_second_run_on_the_same_file_is_refused(self, tmp_path: Path, shared: str) -> None:
        """Two runs never share an output, reject file or checkpoint: the second names the pid
        of the first and changes nothing."""
        src = write_l3(tmp_path / "l3.csv", book_rows(1, 5))
        first_out = tmp_path / "first.csv"
        common = ("-i", src, "--start-seq", "1", "-t", "0.02")
        first = start_cli(
            *common,
            "-o",
            first_out,
            "--checkpoint",
            tmp_path / "first.ckpt",
            "--reject-file",
            tmp_path / "first.rej",
        )
        wait_for(lambda: first_out.exists() and len(rows_of(first_out)) == 4, 20, "the first run")
        before = first_out.read_bytes()
        second = {
            "output": ("-o", first_out),
            "reject file": ("-o", tmp_path / "b.csv", "--reject-file", tmp_path / "first.rej"),
            "checkpoint": ("-o", tmp_path / "b.csv", "--checkpoint", tmp_path / "first.ckpt"),
        }[shared]
        line = one_error_line(cli(*common, "--no-follow", *second))
        assert f"is in use by another process (pid {first.pid})" in line
        assert first_out.read_bytes() == before
        assert finish(first)[0] == 0
        assert first_out.read_bytes() == before
