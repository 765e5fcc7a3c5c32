"""Following a growing file (SPEC §7): fed in pieces that cut lines, a partial last line waits
for its newline, rows are written once the reader has caught up, and the end reached is said
once. Rotation and truncation are test_rotation.py's; a followed file that changes kind,
test_damaged_input.py's."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.conftest import (
    GOLDEN_SHA256,
    REFERENCE_INPUT,
    REFERENCE_OUTPUT,
    add,
    book_rows,
    finish,
    line_count,
    log_events,
    read_offset,
    rows_of,
    sha256,
    start_cli,
    wait_for,
    write_l3,
)


def feed_in_chunks(source: bytes, target: Path, chunk: int, pause: float) -> None:
    """Append ``source`` to ``target`` in chunks that cut lines mid-way."""
    with target.open("ab") as f:
        for i in range(0, len(source), chunk):
            f.write(source[i : i + chunk])
            f.flush()
            time.sleep(pause)


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
        status, stderr = finish(proc)
        assert status == 0
        notes = [line for line in stderr.splitlines() if "end_of_input_reached" in line]
        assert len(notes) == 1 and "--no-follow" in notes[0]
