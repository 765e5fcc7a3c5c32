"""kill -9 at a random instant of a run's progress, and the generated stream the kill loops run on
(tests/system/test_kill9.py, and the kill loops of the other system tests)."""

from __future__ import annotations

import random
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from bench.generate import generate

from tests.conftest import stamp, start_cli

MANGLED_EVERY = 9_973  # lines replaced by spreadsheet-mangled rows, so rejects matter too
REPEATED_EVERY = 7_919  # lines copied further down: duplicates, and late rows for mangled seqs


def make_stream(path: Path, events: int, seed: int) -> Path:
    """A generated out-of-order stream with bad, duplicate and late rows in it.

    A mangled row's seq becomes a permanent gap; a good copy of that row 3,000 lines later is
    then `late`. Copies of good rows are `duplicate`. The rejects of the parser and those of the
    feed interleave, so a restart must merge them exactly as an uninterrupted run did."""
    generate(path, events, seed=seed, window=20)
    data = path.read_bytes().split(b"\n")
    body, tail = data[:-1], data[-1]
    copies: dict[int, bytes] = {}
    for i in range(MANGLED_EVERY, len(body), MANGLED_EVERY):
        copies[i + 3_000] = body[i]
        body[i] = b"1.62794E+18" + body[i][body[i].index(b",") :]
    for i in range(REPEATED_EVERY, len(body), REPEATED_EVERY):
        copies[i + 50] = body[i]
    lines = []
    for i, line in enumerate(body):
        lines.append(line)
        if i in copies:
            lines.append(copies[i])
    path.write_bytes(b"\n".join([*lines, tail]))
    return path


def files_of(out: Path) -> tuple[bytes, bytes]:
    """An output's bytes and its reject file's."""
    return out.read_bytes(), Path(f"{out}.rejects.jsonl").read_bytes()


def batch_args(src: Path, out: Path, ckpt: Path) -> tuple[str | Path, ...]:
    """A --no-follow run of the stream that checkpoints often."""
    return ("-i", src, "-o", out, "--no-follow", "--max-pending", "1000",
            "--checkpoint", ckpt, "--checkpoint-interval", "0.05")  # fmt: skip


def kill_9(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.communicate()


def kill_after_progress(
    args: tuple,
    ckpt: Path,
    rng: random.Random,
    before_waiting: Callable[[], None] = lambda: None,
    most_moves: int = 3,
) -> bool:
    """Start a life of the CLI and kill -9 it at a random instant after its checkpoint has
    moved on 1 to ``most_moves`` times; False if it finished first. The instant follows the
    run's own pace (a random part of the last interval between two checkpoints), so that kills
    land mid-stream at any machine speed. ``before_waiting`` runs once the life has started."""
    last, last_at, interval = stamp(ckpt), time.monotonic(), 0.05
    proc = start_cli(*args)
    before_waiting()
    moves = rng.randint(1, most_moves)
    deadline = time.monotonic() + 120
    while moves:
        if proc.poll() is not None:
            return False
        now = stamp(ckpt)
        if now != last:
            moves -= 1
            interval = time.monotonic() - last_at
            last, last_at = now, time.monotonic()
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.002)
    time.sleep(rng.uniform(0, interval))
    if proc.poll() is not None:
        return False
    kill_9(proc)
    return True
