"""kill -9 at random instants (SPEC §8): a run with --checkpoint restarted after each kill ends
with the bytes of one uninterrupted run, rows and rejects, batch or following a file that grows.
The helpers and the stream are tests/system/kills.py's and tests/system/conftest.py's; the kill
loops of other inputs and outputs are with them (test_parquet.py, test_dbn.py, test_cores.py,
the JetStream roles')."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from bench.generate import SEQ_BASE

from tests.conftest import cli, finish, start_cli, wait_for
from tests.system.kills import batch_args, files_of, kill_after_progress


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
