"""The README's examples, run verbatim as a newcomer would from the top of a clone (issue 20).

Each fenced block of the README is one of: ```sh, run with bash in a temporary copy of
data/ (in the README's order, so a block may use the files an earlier one wrote); ```python,
run there by the interpreter; ```csv, either the first lines of a file of the repository
(`<!-- readme-test: sample of PATH -->` before it) or the output of the ```sh block just
before it (`<!-- readme-test: output of the block above -->`). A block that needs a server or
runs until stopped says so with `<!-- readme-test: skip, REASON -->`. A block that fits none
of these fails the test, so a new example is either run or skipped by name.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, cli_env

README = ROOT / "README.md"
FENCE = re.compile(
    r"(?:^<!-- readme-test: (?P<marker>[^\n]*?) -->\n)?^```(?P<language>\w*)\n(?P<body>.*?)^```$",
    re.M | re.S,
)


@dataclass(frozen=True)
class Block:
    language: str
    marker: str  # "" when unmarked
    body: str
    line: int  # of its opening fence, for messages


def blocks() -> list[Block]:
    readme = README.read_text(encoding="utf-8")
    return [
        Block(
            found["language"],
            found["marker"] or "",
            found["body"],
            readme.count("\n", 0, found.start("language")) + 1,
        )
        for found in FENCE.finditer(readme)
    ]


def program_dir(tmp_path: Path) -> Path:
    """A directory holding `l3tol1`, the checkout's program (not whatever is installed)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / "l3tol1"
    program.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m l3tol1 "$@"\n')
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def test_every_block_is_run_checked_or_skipped_by_name(tmp_path: Path) -> None:
    """Every example of the README, in its order, from a copy of data/ as the working directory;
    the samples of the data are its first lines, and a shown output is what its command prints."""
    work = tmp_path / "repo"
    shutil.copytree(ROOT / "data", work / "data")
    env = cli_env()
    env["PATH"] = str(program_dir(tmp_path)) + os.pathsep + env["PATH"]
    ran = {"sh": 0, "python": 0, "csv": 0}
    last_output: str | None = None
    for block in blocks():
        where = f"README.md line {block.line}"
        if block.marker.startswith("skip, "):
            last_output = None
            continue
        if block.language == "sh":
            assert not block.marker, f"{where}: an sh block is run, or skipped with a reason"
            done = subprocess.run(
                ["bash", "-e", "-o", "pipefail", "-c", block.body],
                cwd=work, env=env, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert done.returncode == 0, f"{where}: exit {done.returncode}\n{done.stderr}"
            last_output = done.stdout
        elif block.language == "python":
            done = subprocess.run(
                [sys.executable, "-c", block.body],
                cwd=work, env=env, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert done.returncode == 0, f"{where}: exit {done.returncode}\n{done.stderr}"
            last_output = None
        elif block.language == "csv" and block.marker.startswith("sample of "):
            path = ROOT / block.marker.removeprefix("sample of ")
            head = path.read_text(encoding="utf-8").splitlines(keepends=True)
            assert block.body == "".join(head[: block.body.count("\n")]), where
        elif block.language == "csv" and block.marker == "output of the block above":
            assert block.body == last_output, f"{where}: the block above printed {last_output!r}"
        else:
            pytest.fail(f"{where}: a ```{block.language} block the test does not know how to run")
        ran[block.language] += 1
    # The README keeps examples of each kind (a lost marker would silently run nothing).
    assert ran["sh"] >= 4 and ran["python"] >= 1 and ran["csv"] >= 3, ran
