"""Defects a hostile review found, each through the real CLI: bad rows never stop a run, data is
never destroyed or mixed, errors are one clear line, signals, pipes and devices behave."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest
import zstandard

from tests.conftest import (
    HEADER,
    REFERENCE_INPUT,
    REFERENCE_OUTPUT,
    add,
    book_rows,
    cli,
    cli_env,
    start_cli,
    wait_for,
    wait_listening,
    write_l3,
)

GOLDEN = REFERENCE_OUTPUT.read_bytes()


def rows_of(path: Path) -> list[str]:
    return path.read_text().splitlines()[1:]


def rejects_of(out: Path) -> list[dict]:
    text = Path(f"{out}.rejects.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a configuration error (exit 2)."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("l3tol1: error: "), result.stderr
    return lines[0]


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str]:
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=10)
    return proc.returncode, stderr


class TestBadRowsNeverStopTheRun:
    HUGE: ClassVar = [
        (f"{'9' * 5000},a,BUY,10,1,,,,,,,,,,,2021-08-03 01:00:00.1 UTC", "bad seq_num"),
        (add(3, "b", "BUY", "10", "9" * 5000), "bad qty"),
        (add(3, "b", "BUY", "1" + "0" * 400 + ".0", "1"), "bad price"),
        (add(3, "b", "BUY", "1" + "0" * 5000, "1"), "bad price"),
    ]

    def test_huge_numbers_are_rejected_and_a_restart_goes_on(self, tmp_path: Path) -> None:
        """Numbers past every bound, following with a checkpoint: rejected, counted, and runs
        restarted from before them read them again and go on (no crash loop)."""
        src = write_l3(tmp_path / "l3.csv", book_rows(1, 2))
        out, ckpt = tmp_path / "l1.csv", tmp_path / "c.ckpt"
        args = ("-i", src, "-o", out, "--start-seq", "1", "-t", "0.02", "--checkpoint", ckpt)
        proc = start_cli(*args)
        wait_for(lambda: out.exists() and len(rows_of(out)) == 1, 20, "the first row")
        assert stop(proc)[0] == 0
        with src.open("a") as f:
            f.write("".join(text + "\n" for text, _ in self.HUGE) + book_rows(3, 4)[0] + "\n")
        for _ in range(2):  # the second run resumes after the first's stop (or its kill -9)
            proc = start_cli(*args)
            wait_for(lambda: len(rows_of(out)) == 2, 20, "the row after the huge ones")
            proc.kill()
            proc.communicate()
        proc = start_cli(*args)
        wait_listening(proc)
        with src.open("a") as f:
            f.write(book_rows(4, 4)[0] + "\n")
        wait_for(lambda: len(rows_of(out)) == 3, 20, "the last row")
        assert stop(proc)[0] == 0
        assert [r["reason"] for r in rejects_of(out)] == [reason for _, reason in self.HUGE]
        assert [line.split(",")[-1] for line in rows_of(out)] == ["2", "3", "4"]

    def test_a_level_of_the_largest_qtys_is_written_exactly(self, tmp_path: Path) -> None:
        """Two orders of the largest qty at one price: their total is written whole."""
        most = str(2**32 - 1)
        src = write_l3(
            tmp_path / "l3.csv",
            [
                add(1, "a", "BUY", "10", most),
                add(2, "b", "BUY", "10", most),
                add(3, "s", "SELL", "11", "1"),
            ],
        )
        out = tmp_path / "l1.csv"
        assert cli("-i", src, "-o", out, "--no-follow").returncode == 0
        assert rows_of(out) == [f"2021-08-03 01:00:00.100000 UTC,10,11,{2 * (2**32 - 1)},1,3"]


class TestNeverDestroyOrMix:
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
        assert stop(first)[0] == 0
        assert first_out.read_bytes() == before

    def test_prices_beyond_a_double_are_rejected(self, tmp_path: Path) -> None:
        """A price a double cannot hold is `bad price`, never inf, never merged with another."""
        big = "1" + "0" * 400 + ".0"
        src = write_l3(
            tmp_path / "l3.csv",
            [
                add(1, "a", "SELL", big, "1"),
                add(2, "b", "SELL", "2" + big[1:], "1"),
                *book_rows(3, 4),
            ],
        )
        out = tmp_path / "l1.csv"
        assert cli("-i", src, "-o", out, "--no-follow", "--start-seq", "1").returncode == 0
        assert [r["reason"] for r in rejects_of(out)] == ["bad price", "bad price"]
        assert "inf" not in out.read_text()


def _checkpoint_json(ckpt: Path) -> dict:
    return json.loads(zstandard.ZstdDecompressor().stream_reader(ckpt.read_bytes()).read())


def _write_checkpoint_json(ckpt: Path, state: object) -> None:
    ckpt.write_bytes(zstandard.ZstdCompressor().compress(json.dumps(state).encode()))


class TestClearErrors:
    @pytest.mark.parametrize(
        ("args", "words"),
        [
            (("-o", ""), "--output-file"),
            (("-o", "/"), "--output-file"),
            (("--checkpoint", ""), "--checkpoint"),
            (("--checkpoint", "/"), "--checkpoint"),
            (("--poll-interval", "0"), "--poll-interval"),
            (("--log-format", "xml"), "--log-format"),
        ],
    )
    def test_bad_paths_and_values_are_one_line(
        self, tmp_path: Path, args: tuple, words: str
    ) -> None:
        """Empty paths, directories and out-of-range values: exit 2, one line, no traceback."""
        base = ("-i", REFERENCE_INPUT, "--no-follow")
        if "-o" not in args:
            base += ("-o", tmp_path / "o.csv")
        assert words in one_error_line(cli(*base, *args))

    def test_an_empty_variable_means_unset(self, tmp_path: Path) -> None:
        """L3TOL1_CHECKPOINT= runs without a checkpoint, as if it were not there."""
        out = tmp_path / "o.csv"
        result = cli(
            "-i", REFERENCE_INPUT, "-o", out, "--no-follow", env=cli_env(L3TOL1_CHECKPOINT="")
        )
        assert result.returncode == 0, result.stderr
        assert out.read_bytes() == GOLDEN

    def test_a_flag_overrides_a_bad_variable(self, tmp_path: Path) -> None:
        """A bad variable does no harm when its flag is given."""
        out = tmp_path / "o.csv"
        env = cli_env(L3TOL1_BATCH_SIZE="many")
        result = cli("-i", REFERENCE_INPUT, "-o", out, "--no-follow", "-b", "10", env=env)
        assert result.returncode == 0, result.stderr

    def test_a_misspelt_variable_is_named_with_the_closest_option(self, tmp_path: Path) -> None:
        """An L3TOL1_* variable that is no option is reported, not silently ignored."""
        env = cli_env(L3TOL1_MAX_PENDNG="5")
        result = cli("-i", REFERENCE_INPUT, "-o", tmp_path / "o.csv", "--no-follow", env=env)
        assert result.returncode == 0, result.stderr
        warning = next(line for line in result.stderr.splitlines() if "L3TOL1_MAX_PENDNG" in line)
        assert "did you mean L3TOL1_MAX_PENDING?" in warning

    def test_names_are_case_insensitive_like_levels(self, tmp_path: Path) -> None:
        """--log-format JSON is accepted, as --log-level DEBUG is."""
        result = cli(
            "-i", REFERENCE_INPUT, "-o", tmp_path / "o.csv", "--no-follow",
            "--log-format", "JSON", "--log-level", "WARNING",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr

    def test_a_column_named_twice_is_refused(self, tmp_path: Path) -> None:
        """A header that names a column it reads twice is ambiguous: exit 2, naming it."""
        src = write_l3(
            tmp_path / "l3.csv", [add(1, "a", "BUY", "10", "1") + ",9"], HEADER + ",seq_num"
        )
        assert "seq_num" in one_error_line(cli("-i", src, "-o", tmp_path / "o.csv", "--no-follow"))

    def test_progress_interval_zero_means_none(self, tmp_path: Path) -> None:
        """--progress-interval 0 turns the progress lines off instead of flooding the log."""
        src = write_l3(tmp_path / "l3.csv", book_rows(1, 3))
        proc = start_cli(
            "-i", src, "-o", tmp_path / "o.csv", "--progress-interval", "0", "-t", "0.02"
        )
        wait_for(
            lambda: (
                len(rows_of(tmp_path / "o.csv")) == 2 if (tmp_path / "o.csv").exists() else False
            ),
            20,
            "rows",
        )
        status, stderr = stop(proc)
        assert status == 0 and '"progress"' not in stderr and len(stderr) < 10_000

    def test_a_changed_option_is_refused_on_restart(self, tmp_path: Path) -> None:
        """A restart with an option that changes the output names it, and changes nothing."""
        src = write_l3(tmp_path / "l3.csv", book_rows(1, 5))
        out, ckpt = tmp_path / "o.csv", tmp_path / "c.ckpt"
        args = ("-i", src, "-o", out, "--no-follow", "--checkpoint", ckpt)
        assert cli(*args, "--max-pending", "10").returncode == 0
        before = out.read_bytes()
        line = one_error_line(cli(*args, "--max-pending", "20"))
        assert "--max-pending 10" in line and "--max-pending 20" in line
        assert out.read_bytes() == before

    @pytest.mark.parametrize(
        "damage",
        ["random bytes", "missing key", "wrong type", "waiting seq not after next", "version 1"],
    )
    def test_a_damaged_checkpoint_is_one_line(self, tmp_path: Path, damage: str) -> None:
        """Whatever the damage: exit 2 with one line at once; never a traceback or a hang."""
        src = write_l3(tmp_path / "l3.csv", [*book_rows(1, 3), *book_rows(6, 8)])
        out, ckpt = tmp_path / "o.csv", tmp_path / "c.ckpt"
        args = ("-i", src, "-o", out, "--start-seq", "1", "-t", "0.02", "--checkpoint", ckpt)
        proc = start_cli(*args)
        wait_for(lambda: out.exists() and len(rows_of(out)) == 2, 20, "rows before the gap")
        assert stop(proc)[0] == 0
        state = _checkpoint_json(ckpt)
        assert state["feed"]["pending"]["seq"] == [6, 7, 8]  # waiting behind the gap at 4
        if damage == "random bytes":
            ckpt.write_bytes(os.urandom(300))
        elif damage == "version 1":
            ckpt.write_text(json.dumps({"version": 1, "input": {}}))
        else:
            if damage == "missing key":
                del state["instruments"]["books"][0]["orders"]
            elif damage == "wrong type":
                state["feed"]["next_seq"] = "four"
            else:
                state["feed"]["next_seq"] = 7
            _write_checkpoint_json(ckpt, state)
        started = time.monotonic()
        line = one_error_line(cli(*args, timeout=20))
        assert f"checkpoint {ckpt}" in line
        assert time.monotonic() - started < 10


class TestSignalsPipesAndStreams:
    def test_sighup_is_a_clean_stop(self, tmp_path: Path) -> None:
        """SIGHUP (a closed terminal) stops like SIGTERM: rows flushed, checkpoint written."""
        src = write_l3(tmp_path / "l3.csv", book_rows(1, 5))
        out, ckpt = tmp_path / "o.csv", tmp_path / "c.ckpt"
        proc = start_cli("-i", src, "-o", out, "--start-seq", "1", "--checkpoint", ckpt)
        wait_for(lambda: ckpt.exists(), 20, "a checkpoint")
        status, stderr = stop(proc, signal.SIGHUP)
        assert status == 0, stderr
        assert '"stopped_by": "SIGHUP"' in stderr
        assert len(rows_of(out)) == 4

    def test_sigterm_right_after_start_is_a_clean_stop(self, tmp_path: Path) -> None:
        """A stop signal as soon as l3tol1 handles signals: exit 0, never the default action."""
        for _ in range(5):
            proc = start_cli("-i", REFERENCE_INPUT, "-o", tmp_path / "o.csv", "--no-follow")
            wait_listening(proc)
            assert stop(proc)[0] == 0

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

    def test_named_pipe_input(self, tmp_path: Path) -> None:
        """A named pipe is read once to its end: the golden bytes, its header read only once."""
        fifo = tmp_path / "l3.fifo"
        os.mkfifo(fifo)
        out = tmp_path / "o.csv"
        writer = threading.Thread(target=lambda: fifo.write_bytes(REFERENCE_INPUT.read_bytes()))
        writer.start()
        result = cli("-i", fifo, "-o", out)
        writer.join()
        assert result.returncode == 0, result.stderr
        assert out.read_bytes() == GOLDEN

    def test_sigterm_while_a_pipe_waits(self, tmp_path: Path) -> None:
        """A pipe whose writer sends nothing: SIGTERM still ends the run within 5 s, exit 0."""
        fifo = tmp_path / "l3.fifo"
        os.mkfifo(fifo)
        holder = os.open(fifo, os.O_RDWR)  # a writer that stays and never writes
        try:
            os.write(holder, (HEADER + "\n" + book_rows(1, 2)[0] + "\n").encode())
            out = tmp_path / "o.csv"
            proc = start_cli("-i", fifo, "-o", out)
            wait_for(lambda: out.exists() and out.stat().st_size > 0, 20, "the output header")
            started = time.monotonic()
            status, stderr = stop(proc)
            assert status == 0, stderr
            assert time.monotonic() - started < 5
        finally:
            os.close(holder)

    @pytest.mark.parametrize("name", ["-", "/dev/stdin"])
    def test_standard_input(self, tmp_path: Path, name: str) -> None:
        """`-i -` and `-i /dev/stdin` read a pipe on standard input to its end."""
        out = tmp_path / "o.csv"
        feeder = subprocess.Popen(["cat", REFERENCE_INPUT], stdout=subprocess.PIPE)
        result = subprocess.run(
            [sys.executable, "-m", "l3tol1", "-i", name, "-o", out],
            stdin=feeder.stdout, env=cli_env(), capture_output=True, timeout=60,
        )  # fmt: skip
        feeder.stdout.close()  # type: ignore[union-attr]
        assert feeder.wait() == 0
        assert result.returncode == 0, result.stderr
        assert out.read_bytes() == GOLDEN

    @pytest.mark.parametrize(
        ("args", "words"),
        [
            (("-i", "-", "--follow"), "--follow cannot follow standard input"),
            (("-i", "-", "--checkpoint", "c.ckpt"), "--checkpoint needs an input"),
            (("-o", "/dev/stdout", "--checkpoint", "c.ckpt"), "--checkpoint needs regular output"),
        ],
    )
    def test_streams_refuse_what_they_cannot_do(
        self, tmp_path: Path, args: tuple, words: str
    ) -> None:
        """Following stdin, or checkpointing what cannot be read again or cut back: exit 2."""
        base = ("-i", REFERENCE_INPUT, "-o", tmp_path / "o.csv", "--no-follow")
        if "-i" in args:
            base = ("-o", tmp_path / "o.csv")
        result = cli(*base, *args, cwd=tmp_path)
        assert words in one_error_line(result)

    def test_output_to_standard_output(self, tmp_path: Path) -> None:
        """-o /dev/stdout writes the rows to a pipe; -o /dev/null discards them."""
        result = subprocess.run(
            [sys.executable, "-m", "l3tol1", "-i", REFERENCE_INPUT, "-o", "/dev/stdout",
             "--reject-file", "/dev/null", "--no-follow"],
            env=cli_env(), capture_output=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout == GOLDEN
        nothing = cli(
            "-i", REFERENCE_INPUT, "-o", "/dev/null", "--reject-file", "/dev/null", "--no-follow"
        )
        assert nothing.returncode == 0, nothing.stderr

    def test_following_says_once_that_the_end_was_reached(self, tmp_path: Path) -> None:
        """A first-time batch user is told the input was read and l3tol1 follows it."""
        src = write_l3(tmp_path / "l3.csv", book_rows(1, 3))
        out = tmp_path / "o.csv"
        proc = start_cli(
            "-i", src, "-o", out, "--start-seq", "1", "-t", "0.02", "--poll-interval", "0.01"
        )
        wait_for(lambda: out.exists() and len(rows_of(out)) == 2, 20, "the rows")
        with src.open("a") as f:
            f.write(book_rows(4, 4)[0] + "\n")
        wait_for(lambda: len(rows_of(out)) == 3, 20, "the new row")
        status, stderr = stop(proc)
        assert status == 0
        notes = [line for line in stderr.splitlines() if "end_of_input_reached" in line]
        assert len(notes) == 1 and "--no-follow" in notes[0]
