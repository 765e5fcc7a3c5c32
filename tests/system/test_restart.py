"""Every checkpoint l3tol1 can write is resumable (SPEC §8): stop anywhere, restart, same bytes.

One following run goes through every kind of moment a checkpoint can be cut at: before the
input exists, with only its header, in the middle of a line, just after a rotation (the new
file not yet holding a row), just after a copytruncate, at the end of the input. For each
moment and each way of stopping (SIGTERM, and kill -9), the run is stopped there, restarted,
and taken to the end: the output must equal one uninterrupted run's, byte for byte.
"""

from __future__ import annotations

import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import (
    HEADER,
    book_rows,
    cli,
    read_checkpoint,
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
