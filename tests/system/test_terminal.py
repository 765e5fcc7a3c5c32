"""The terminal experience: a progress bar and a summary table in a real terminal (tmux), and
none of it when stderr is piped."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bench.generate import generate

from tests.conftest import ROOT, cli

BAR = "━"


@pytest.fixture(scope="module")
def big_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("term") / "l3.csv"
    generate(path, 400_000, seed=5, window=5)
    return path


@pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed (.ci/run installs it)"
)
def test_progress_bar_and_summary_in_a_terminal(tmp_path: Path, big_input: Path) -> None:
    """In a real terminal: a live progress bar while converting, a summary table at the end."""
    session = f"l3tol1-test-{time.monotonic_ns()}"
    command = " ".join(
        shlex.quote(str(x))
        for x in (
            "env",
            f"PYTHONPATH={ROOT / 'service'}",
            sys.executable,
            "-m",
            "l3tol1",
            "-i",
            big_input,
            "-o",
            tmp_path / "l1.csv",
            "--no-follow",
        )
    )
    subprocess.run(
        [
            "tmux",
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            "150",
            "-y",
            "40",
            f"{command}; echo EXIT=$?; sleep 60",
        ],
        check=True,
    )
    screens = []
    try:
        deadline = time.monotonic() + 60
        while True:
            screen = subprocess.run(
                ["tmux", "capture-pane", "-p", "-t", session],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            screens.append(screen)
            if "EXIT=" in screen:
                break
            assert time.monotonic() < deadline, screen
            time.sleep(0.1)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    final = screens[-1]
    assert "EXIT=0" in final
    # While running: a bar partly done, with a rate and an ETA.
    assert any(BAR in s and "events/s" in s and "ETA" in s and "100%" not in s for s in screens)
    assert "l3tol1 summary" in final and "L1 rows written" in final and "events/s" in final


def test_nothing_of_it_when_piped(tmp_path: Path, big_input: Path) -> None:
    """Piped stderr: JSON log lines only, no bar, no table, no carriage returns."""
    result = cli("-i", big_input, "-o", tmp_path / "l1.csv", "--no-follow")
    assert result.returncode == 0
    assert BAR not in result.stderr and "\r" not in result.stderr
    assert "l3tol1 summary" not in result.stderr
    assert all(line.startswith("{") for line in result.stderr.splitlines())
