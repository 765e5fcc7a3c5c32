"""Input sources (SPEC §10), through the real CLI: compressed files recognised by their magic
bytes, standard input, named pipes and standard output, damaged data, and a checkpointed restart
on a compressed file. Damage in depth is test_damaged_input.py's; a pipe that waits at SIGTERM,
test_signals.py's."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zstandard

from tests.conftest import (
    REFERENCE_INPUT,
    REFERENCE_OUTPUT,
    cli,
    cli_env,
    one_error_line,
    stamp,
    start_cli,
)

GOLDEN = REFERENCE_OUTPUT.read_bytes()
CODECS = {
    "gzip": gzip.compress,
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
    "bzip2": bz2.compress,
    "xz": lzma.compress,
}


def compressed(folder: Path, codec: str, name: str = "l3.data") -> Path:
    """The reference input compressed with ``codec``, under a name that says nothing of it."""
    path = folder / name
    path.write_bytes(CODECS[codec](REFERENCE_INPUT.read_bytes()))
    return path


class TestCompressed:
    @pytest.mark.parametrize("codec", sorted(CODECS))
    def test_each_codec_gives_the_golden_bytes(self, tmp_path: Path, codec: str) -> None:
        """gzip, zstd, bzip2 and xz are recognised by content and read to their end."""
        out = tmp_path / "l1.csv"
        result = cli("-i", compressed(tmp_path, codec), "-o", out)  # no --no-follow needed
        assert result.returncode == 0, result.stderr
        assert out.read_bytes() == GOLDEN
        assert '"lines_read": 34248' in result.stderr

    def test_concatenated_members(self, tmp_path: Path) -> None:
        """A gzip file of several members (as `cat a.gz b.gz` makes) is read whole."""
        data = REFERENCE_INPUT.read_bytes()
        cut = data.index(b"\n", len(data) // 2) + 1
        src = tmp_path / "l3.gz"
        src.write_bytes(gzip.compress(data[:cut]) + gzip.compress(data[cut:]))
        out = tmp_path / "l1.csv"
        assert cli("-i", src, "-o", out).returncode == 0
        assert out.read_bytes() == GOLDEN

    @pytest.mark.parametrize("codec", ["gzip", "zstd"])
    def test_compressed_standard_input(self, tmp_path: Path, codec: str) -> None:
        """`... | l3tol1 -i -` decompresses what arrives on standard input too."""
        out = tmp_path / "l1.csv"
        result = subprocess.run(
            [sys.executable, "-m", "l3tol1", "-i", "-", "-o", out],
            input=CODECS[codec](REFERENCE_INPUT.read_bytes()),
            env=cli_env(),
            capture_output=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert out.read_bytes() == GOLDEN

    @pytest.mark.parametrize("codec", ["gzip", "zstd", "xz"])
    def test_damaged_file_is_one_clear_error(self, tmp_path: Path, codec: str) -> None:
        """Damaged compressed data: exit 2 with one line naming the input; what was decoded
        before the damage is written whole (complete rows, a consistent checkpoint)."""
        src = compressed(tmp_path, codec)
        data = bytearray(src.read_bytes())
        middle = len(data) // 2
        data[middle : middle + 64] = bytes(64)  # zeros where compressed data was
        src.write_bytes(bytes(data))
        out, ckpt = tmp_path / "l1.csv", tmp_path / "c.ckpt"
        result = cli("-i", src, "-o", out, "--checkpoint", ckpt)
        assert result.returncode == 2, result.stderr
        last = result.stderr.splitlines()[-1]
        assert last.startswith(f"l3tol1: error: cannot read input {src}: damaged {codec} data")
        written = out.read_bytes()
        assert written.endswith(b"\n") and GOLDEN.startswith(written)

    def test_follow_is_refused_for_a_compressed_file(self, tmp_path: Path) -> None:
        """A compressed file is read to its end: an explicit --follow is a configuration error."""
        result = cli("-i", compressed(tmp_path, "gzip"), "-o", tmp_path / "o.csv", "--follow")
        assert result.returncode == 2
        assert (
            "--follow cannot follow" in result.stderr
            and "a compressed or DBN file" in result.stderr
        )

    @pytest.mark.parametrize("codec", ["gzip", "zstd"])
    def test_checkpointed_restart_decompresses_and_skips(self, tmp_path: Path, codec: str) -> None:
        """kill -9 while converting a compressed file, then a restart: the golden bytes (the
        restart decompresses from the start and skips to the recorded position)."""
        src = compressed(tmp_path, codec)
        out, ckpt = tmp_path / "l1.csv", tmp_path / "c.ckpt"
        args = (
            "-i",
            src,
            "-o",
            out,
            "--checkpoint",
            ckpt,
            "--checkpoint-interval",
            "0",
            "-b",
            "50",
        )
        kills = 0
        for _ in range(3):
            before = stamp(ckpt)
            proc = start_cli(*args)
            while proc.poll() is None and stamp(ckpt) in (before, None):
                time.sleep(0.001)  # kill right after its first checkpoint of this life
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.communicate()
        result = cli(*args)
        assert result.returncode == 0, result.stderr
        assert out.read_bytes() == GOLDEN
        assert kills >= 1


class TestPipesAndStandardStreams:
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
