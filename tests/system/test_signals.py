"""Stop signals through the real CLI (SPEC §8): SIGTERM, SIGINT and SIGHUP stop a run cleanly
(exit 0, rows flushed, checkpoint written) within seconds: under full load, right after start,
while a pipe waits; a second signal ends it at once, and leaves a checkpoint a restart finishes
exactly from. Restarts after every kind of stop are test_restart.py's."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.conftest import (
    HEADER,
    REFERENCE_INPUT,
    add,
    book_rows,
    cli,
    finish,
    line_count,
    rows_of,
    send_two_signals,
    start_cli,
    wait_for,
    wait_listening,
    write_l3,
)
from tests.system.kills import batch_args, files_of


class TestStopSignals:
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

    def test_sighup_is_a_clean_stop(self, tmp_path: Path) -> None:
        """SIGHUP (a closed terminal) stops like SIGTERM: rows flushed, checkpoint written."""
        src = write_l3(tmp_path / "l3.csv", book_rows(1, 5))
        out, ckpt = tmp_path / "o.csv", tmp_path / "c.ckpt"
        proc = start_cli("-i", src, "-o", out, "--start-seq", "1", "--checkpoint", ckpt)
        wait_for(lambda: ckpt.exists(), 20, "a checkpoint")
        status, stderr = finish(proc, signal.SIGHUP)
        assert status == 0, stderr
        assert '"stopped_by": "SIGHUP"' in stderr
        assert len(rows_of(out)) == 4

    def test_sigterm_right_after_start_is_a_clean_stop(self, tmp_path: Path) -> None:
        """A stop signal as soon as l3tol1 handles signals: exit 0, never the default action."""
        for _ in range(5):
            proc = start_cli("-i", REFERENCE_INPUT, "-o", tmp_path / "o.csv", "--no-follow")
            wait_listening(proc)
            assert finish(proc)[0] == 0

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
            status, stderr = finish(proc)
            assert status == 0, stderr
            assert time.monotonic() - started < 5
        finally:
            os.close(holder)


class TestSecondSignal:
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
