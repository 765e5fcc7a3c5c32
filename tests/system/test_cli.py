"""The real CLI in a subprocess: golden output, follow mode, signals, configuration errors."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import (
    REFERENCE_INPUT,
    REFERENCE_OUTPUT,
    add,
    cli,
    cli_env,
    read_offset,
    send_two_signals,
    start_cli,
    wait_for,
    wait_listening,
    write_l3,
)

GOLDEN_SHA256 = "e987d24b35a81aaee794b805b9ca0f3c4fd2f91bc9c07ee7740cd1d33153b874"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def log_events(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def feed_in_chunks(source: bytes, target: Path, chunk: int, pause: float) -> None:
    """Append ``source`` to ``target`` in chunks that cut lines mid-way."""
    with target.open("ab") as f:
        for i in range(0, len(source), chunk):
            f.write(source[i : i + chunk])
            f.flush()
            time.sleep(pause)


def line_count(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


class TestGolden:
    def test_reference_data_is_byte_identical(self, tmp_path: Path) -> None:
        """`python -m l3tol1 --no-follow` on the bundled data gives the expected file."""
        assert sha256(REFERENCE_OUTPUT) == GOLDEN_SHA256
        out = tmp_path / "l1.csv"
        result = cli("-i", REFERENCE_INPUT, "-o", out, "--no-follow")
        assert result.returncode == 0, result.stderr
        assert sha256(out) == GOLDEN_SHA256
        assert (tmp_path / "l1.csv.rejects.jsonl").read_bytes() == b""
        summary = log_events(result.stderr)[-1]
        assert summary["event"] == "summary"
        assert summary["events_applied"] == 34247
        assert summary["rows_written"] == 19290

    def test_console_script_is_the_same_program(self, tmp_path: Path) -> None:
        """The installed `l3tol1` script gives the same bytes."""
        script = Path(sys.executable).with_name("l3tol1")
        if not script.exists():
            found = shutil.which("l3tol1")
            if found is None:
                pytest.fail("the l3tol1 console script is not installed")
            script = Path(found)
        import subprocess

        out = tmp_path / "l1.csv"
        result = subprocess.run(
            [script, "-i", REFERENCE_INPUT, "-o", out, "--no-follow"],
            capture_output=True,
            text=True,
            env=cli_env(),
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert sha256(out) == GOLDEN_SHA256


class TestFollow:
    def test_chunked_feed_then_sigterm(self, tmp_path: Path) -> None:
        """Fed in chunks that split lines, then SIGTERM: exit 0 within 5 s, identical output."""
        src = tmp_path / "l3.csv"
        out = tmp_path / "l1.csv"
        proc = start_cli("-i", src, "-o", out, "--follow", "-t", "0.05", "--gap-timeout", "1")
        try:
            # The file does not exist yet: it is waited for, the output already opened (its
            # header follows the input's: whether rows have an instrument column is unknown).
            wait_for(out.exists, 30, "the output")
            feed_in_chunks(REFERENCE_INPUT.read_bytes(), src, 65_537, 0.01)
            wait_for(
                lambda: out.exists() and out.stat().st_size == REFERENCE_OUTPUT.stat().st_size,
                30,
                "the full output",
            )
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=5)
            assert time.monotonic() - started < 5
        finally:
            proc.kill()
            _, stderr = proc.communicate()
        assert proc.returncode == 0, stderr
        assert sha256(out) == GOLDEN_SHA256
        summary = log_events(stderr)[-1]
        assert summary["event"] == "summary" and summary["stopped_by"] == "SIGTERM"

    def test_partial_last_line_waits_for_its_newline(self, tmp_path: Path) -> None:
        """A line without its newline is not parsed while following."""
        src = write_l3(
            tmp_path / "l3.csv", [add(1, "a", "BUY", "10", "1"), add(2, "b", "SELL", "11", "1")]
        )
        out = tmp_path / "l1.csv"
        proc = start_cli("-i", src, "-o", out, "--start-seq", "1", "-t", "0.02")
        try:
            wait_for(lambda: line_count(out) == 2, 10, "first row")
            with src.open("a") as f:
                f.write(add(3, "c", "BUY", "10.5", "1")[:-5])  # time cut short: invalid now
            size = src.stat().st_size
            wait_for(lambda: read_offset(proc.pid, src) == size, 10, "the partial line read")
            assert line_count(out) == 2
            with src.open("a") as f:
                f.write(add(3, "c", "BUY", "10.5", "1")[-5:] + "\n")
            wait_for(lambda: line_count(out) == 3, 10, "second row")
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=5)
        finally:
            proc.kill()
            proc.communicate()
        assert proc.returncode == 0
        assert (tmp_path / "l1.csv.rejects.jsonl").read_text() == ""

    def test_rows_are_written_once_the_input_is_caught_up(self, tmp_path: Path) -> None:
        """With a flush interval of ten minutes and batches of 100,000 rows, a row appended to
        a followed file is still written at once: the reader has caught up with the file, so
        nothing more is coming to batch it with (the latency of a quiet feed)."""
        src = write_l3(
            tmp_path / "l3.csv", [add(1, "a", "BUY", "10", "1"), add(2, "b", "SELL", "11", "1")]
        )
        out = tmp_path / "l1.csv"
        proc = start_cli(
            "-i", src, "-o", out, "--start-seq", "1", "-t", "600", "-b", "100000"
        )  # fmt: skip
        try:
            wait_for(lambda: line_count(out) == 2, 60, "the first row, long before 600 s")
            with src.open("a") as f:
                f.write(add(3, "c", "BUY", "10.5", "1") + "\n")
            wait_for(lambda: line_count(out) == 3, 60, "the appended row, long before 600 s")
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=5)
        finally:
            proc.kill()
            proc.communicate()
        assert proc.returncode == 0

    def test_sigterm_under_full_load_exits_within_5s(self, tmp_path: Path) -> None:
        """SIGTERM while a large input is being converted: exit 0 in < 5 s, output whole rows."""
        src = tmp_path / "big.csv"
        rows = []
        for i in range(300_000):
            rows.append(
                add(
                    i,
                    str(i),
                    "BUY" if i % 2 else "SELL",
                    str(100 + (i % 500) / 100 if i % 2 else 106 + (i % 300) / 100),
                    "5",
                )
            )
        write_l3(src, rows)
        out = tmp_path / "l1.csv"
        proc = start_cli("-i", src, "-o", out, "--follow", "--start-seq", "0")
        try:
            wait_for(lambda: out.exists() and out.stat().st_size > 1000, 30, "output")
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=5)
            elapsed = time.monotonic() - started
        finally:
            proc.kill()
            proc.communicate()
        assert proc.returncode == 0
        assert elapsed < 5
        assert out.read_bytes().endswith(b"\n")

    def test_second_signal_exits_at_once(self, tmp_path: Path) -> None:
        """SIGTERM then SIGINT at once: the second ends the process immediately (128 + 2)."""
        src = write_l3(tmp_path / "l3.csv", [add(i, str(i), "BUY", "10", "1") for i in range(9)])
        out = tmp_path / "l1.csv"
        proc = start_cli("-i", src, "-o", out, "--start-seq", "0")
        try:
            wait_listening(proc)
            wait_for(lambda: line_count(out) == 1, 10, "the output header")
            send_two_signals(proc)
            proc.wait(timeout=5)
        finally:
            proc.kill()
            _, stderr = proc.communicate()
        assert proc.returncode in (128 + signal.SIGINT, 128 + signal.SIGTERM), stderr
        assert "forced_exit" in stderr


class TestConfigErrors:
    @pytest.mark.parametrize(
        ("args", "words"),
        [
            (["--no-such-option"], "unrecognized arguments"),
            (["-b", "0"], "--batch-size"),
            (["-t", "soon"], "--max-flush-interval"),
            (["--log-format", "xml"], "--log-format"),
            (["--max-pending", "-1"], "--max-pending"),
        ],
    )
    def test_bad_option_exits_2_with_one_line(self, tmp_path: Path, args: list, words: str) -> None:
        """Bad usage: exit 2, exactly one line on stderr naming the option."""
        result = cli("-i", REFERENCE_INPUT, "-o", tmp_path / "o.csv", "--no-follow", *args)
        assert result.returncode == 2
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and words in lines[0] and lines[0].startswith("l3tol1: error:")

    def test_missing_input_without_follow(self, tmp_path: Path) -> None:
        """A missing input with --no-follow is a configuration error; no output is created."""
        result = cli("-i", tmp_path / "nope.csv", "-o", tmp_path / "o.csv", "--no-follow")
        assert result.returncode == 2
        assert result.stderr.splitlines() == [
            f"l3tol1: error: input file {tmp_path / 'nope.csv'} does not exist"
        ]
        assert not (tmp_path / "o.csv").exists()

    @pytest.mark.parametrize(
        ("content", "words"),
        [
            (b"", "empty"),
            (b"seq_num,add_order_id,time\n1,2,3\n", "lacks required column(s) add_side"),
            (b"\xff\xfe garbage\n", "not valid UTF-8"),
        ],
    )
    def test_unreadable_header(self, tmp_path: Path, content: bytes, words: str) -> None:
        """A header that is empty, undecodable or missing columns: exit 2, one line."""
        src = tmp_path / "l3.csv"
        src.write_bytes(content)
        result = cli("-i", src, "-o", tmp_path / "o.csv", "--no-follow")
        assert result.returncode == 2
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and words in lines[0]

    def test_output_equal_to_input_is_refused(self, tmp_path: Path) -> None:
        """The input is never overwritten."""
        src = write_l3(tmp_path / "l3.csv", [add(1, "a", "BUY", "10", "1")])
        before = src.read_bytes()
        result = cli("-i", src, "-o", src, "--no-follow")
        assert result.returncode == 2 and "same file" in result.stderr
        assert src.read_bytes() == before

    def test_bad_environment_value(self, tmp_path: Path) -> None:
        """A bad L3TOL1_* value is named in one line."""
        result = cli(
            "-i",
            REFERENCE_INPUT,
            "-o",
            tmp_path / "o.csv",
            env=cli_env(L3TOL1_BATCH_SIZE="many", L3TOL1_FOLLOW="false"),
        )
        assert result.returncode == 2
        assert result.stderr.strip() == (
            "l3tol1: error: L3TOL1_BATCH_SIZE='many' is not a valid positive integer"
        )


class TestEnvironment:
    def test_environment_configures_and_flags_win(self, tmp_path: Path) -> None:
        """L3TOL1_* variables set options; a flag wins over its variable."""
        out = tmp_path / "env.csv"
        result = cli(
            "-o",
            out,
            env=cli_env(
                L3TOL1_INPUT_FILE=str(REFERENCE_INPUT),
                L3TOL1_OUTPUT_FILE=str(tmp_path / "loses.csv"),
                L3TOL1_FOLLOW="no",
                L3TOL1_REJECT_FILE=str(tmp_path / "rej.jsonl"),
            ),
        )
        assert result.returncode == 0, result.stderr
        assert sha256(out) == GOLDEN_SHA256
        assert not (tmp_path / "loses.csv").exists()
        assert (tmp_path / "rej.jsonl").exists()
        start = log_events(result.stderr)[0]
        assert start["event"] == "start" and start["follow"] is False


class TestProgress:
    def test_progress_lines_while_running(self, tmp_path: Path) -> None:
        """A progress line with every counter is logged periodically while following."""
        src = write_l3(
            tmp_path / "l3.csv",
            [add(1, "a", "BUY", "10", "1"), add(2, "b", "SELL", "11", "1"), "junk"],
        )
        proc = start_cli(
            "-i", src, "-o", tmp_path / "o.csv", "--progress-interval", "0.2", "--start-seq", "1"
        )
        collected: list[str] = []
        reader = threading.Thread(target=lambda: collected.extend(proc.stderr), daemon=True)
        with proc:
            reader.start()
            wait_for(
                lambda: sum('"progress"' in line for line in collected) >= 3,
                20,
                "three progress lines",
            )
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=5)
            reader.join(timeout=5)
        events = log_events("".join(collected))
        progress = [e for e in events if e["event"] == "progress"]
        assert len(progress) >= 3
        last = progress[-1]
        for key in (
            "events_read",
            "events_applied",
            "rows_written",
            "pending",
            "rejects",
            "anomalies",
            "gaps_skipped",
            "events_per_s",
        ):
            assert key in last
        assert last["events_applied"] == 2 and last["rejects"] == {"wrong field count": 1}
