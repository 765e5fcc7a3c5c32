"""Restart from a checkpoint (SPEC §8), through the real CLI: every checkpoint l3tol1 can write is
resumable (stop anywhere, restart, same bytes); what was waiting survives a restart; a checkpoint
that does not fit the run (another input or output, a changed option, damage) is refused in one
line. kill -9 loops are test_kill9.py's; a rotation while stopped, test_rotation.py's.

One following run goes through every kind of moment a checkpoint can be cut at: before the
input exists, with only its header, in the middle of a line, just after a rotation (the new
file not yet holding a row), just after a copytruncate, at the end of the input. For each
moment and each way of stopping (SIGTERM, and kill -9), the run is stopped there, restarted,
and taken to the end: the output must equal one uninterrupted run's, byte for byte.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard

from tests.conftest import (
    HEADER,
    add,
    book_rows,
    cli,
    finish,
    one_error_line,
    read_checkpoint,
    rows_of,
    start_cli,
    wait_for,
    wait_listening,
    write_l3,
)

ROWS = 40


@dataclass
class Step:
    """A change to the input, and how to tell that l3tol1 has taken it in."""

    name: str
    do: Callable[[], None]
    taken: Callable[[], bool]


class Feed:
    """The input folder of one run, and the steps that write, rotate and truncate it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "feed.csv"
        self.out = folder / "l1.csv"
        self.ckpt = folder / "state.ckpt"
        rows = book_rows(1, ROWS)
        half = len(rows[10]) // 2
        self.steps = [
            Step("before the file exists", lambda: None, self.running),
            Step("header only", lambda: self.write(HEADER + "\n"), self.at_offset(len(HEADER) + 1)),
            Step(
                "mid-line",
                lambda: self.append("".join(r + "\n" for r in rows[:10]) + rows[10][:half]),
                self.rows(9),
            ),
            Step(
                "rows",
                lambda: self.append(
                    rows[10][half:] + "\n" + "".join(r + "\n" for r in rows[11:20])
                ),
                self.rows(19),
            ),
            Step("just after a rotation", self.rotate(rows[20:22]), self.in_new_file(21)),
            Step(
                "rows after the rotation",
                lambda: self.append(self.lines(rows[22:30])),
                self.rows(29),
            ),
            Step("just after a truncation", self.copytruncate, self.truncated),
            Step(
                "end of input",
                lambda: self.append(HEADER + "\n" + self.lines(rows[30:])),
                self.rows(ROWS - 1),
            ),
        ]

    @staticmethod
    def lines(rows: list[str]) -> str:
        return "".join(r + "\n" for r in rows)

    def write(self, text: str) -> None:
        self.path.write_text(text)

    def append(self, text: str) -> None:
        with self.path.open("a") as f:
            f.write(text)

    def rotate(self, late_rows: list[str]) -> Callable[[], None]:
        def rotate() -> None:
            rotated = self.path.with_name("feed.csv.1")
            self.path.rename(rotated)
            with rotated.open("a") as f:  # written by the feeder after the rename
                f.write(self.lines(late_rows))
            self.write(HEADER + "\n")

        return rotate

    def copytruncate(self) -> None:
        shutil.copy(self.path, self.path.with_name("feed.csv.2"))
        with self.path.open("r+") as f:
            f.truncate(0)

    # -- what l3tol1 has taken in ---------------------------------------------------------------

    def running(self) -> bool:
        return self.out.exists()  # opened at start; its header follows the input's

    def row_count(self) -> int:
        return self.out.read_text().count("\n") - 1 if self.out.exists() else 0

    def rows(self, count: int) -> Callable[[], bool]:
        return lambda: self.row_count() == count

    def checkpoint_input(self) -> tuple[int, int] | None:
        try:
            record = read_checkpoint(self.ckpt).input
        except FileNotFoundError:
            return None
        return record.ino, record.offset

    def at_offset(self, offset: int) -> Callable[[], bool]:
        return lambda: self.checkpoint_input() == (self.path.stat().st_ino, offset)

    def in_new_file(self, rows: int) -> Callable[[], bool]:
        return lambda: self.row_count() == rows and self.at_offset(len(HEADER) + 1)()

    def truncated(self) -> bool:
        return self.checkpoint_input() == (self.path.stat().st_ino, 0)


def args(feed: Feed) -> tuple:
    return (
        "-i", feed.path, "-o", feed.out, "--follow", "--start-seq", "1", "-t", "0.02",
        "--gap-timeout", "60", "--poll-interval", "0.01",
        "--checkpoint", feed.ckpt, "--checkpoint-interval", "0.02",
    )  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The output of one run over every row, without a stop."""
    folder = tmp_path_factory.mktemp("whole")
    src = write_l3(folder / "feed.csv", book_rows(1, ROWS))
    result = cli("-i", src, "-o", folder / "l1.csv", "--no-follow", "--start-seq", "1")
    assert result.returncode == 0, result.stderr
    return (folder / "l1.csv").read_bytes()


MOMENTS = [0, 1, 2, 4, 6, 7]


@pytest.mark.parametrize("how", ["SIGTERM", "kill -9"])
@pytest.mark.parametrize("moment", MOMENTS, ids=lambda m: Feed(Path(".")).steps[m].name)
def test_stop_anywhere_then_restart(
    tmp_path: Path, uninterrupted: bytes, moment: int, how: str
) -> None:
    """Stopped at this moment and restarted, the run ends with the uninterrupted bytes."""
    feed = Feed(tmp_path)
    proc = start_cli(*args(feed))
    for step in feed.steps[: moment + 1]:
        step.do()
        wait_for(step.taken, 30, f"l3tol1 to take in step {step.name!r}")
    if how == "SIGTERM":
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=10)
        assert proc.returncode == 0, stderr
    else:
        proc.kill()
        proc.communicate()
    proc = start_cli(*args(feed))
    wait_listening(proc)
    for step in feed.steps[moment + 1 :]:
        step.do()
        wait_for(step.taken, 30, f"l3tol1 to take in step {step.name!r} after the restart")
    wait_for(feed.rows(ROWS - 1), 30, "every row")
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 0, stderr
    assert feed.out.read_bytes() == uninterrupted
    assert Path(f"{feed.out}.rejects.jsonl").read_bytes() == b""


def _checkpoint_json(ckpt: Path) -> dict:
    return json.loads(zstandard.ZstdDecompressor().stream_reader(ckpt.read_bytes()).read())


def _write_checkpoint_json(ckpt: Path, state: object) -> None:
    ckpt.write_bytes(zstandard.ZstdCompressor().compress(json.dumps(state).encode()))


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


class TestMismatchedCheckpoint:
    """A checkpoint that does not fit the run: exit 2 with one line, and nothing changed."""

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
        assert finish(proc)[0] == 0
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
