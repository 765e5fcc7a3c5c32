"""`make demo` as a newcomer runs it (issue 20): a fresh copy of the checkout, no C compiler.

The demo then builds its own environment (the package and its dependencies, not the test
extra), runs on the pure-Python core with one line that says so, never a pip traceback, and
prints MATCH. About 40 s: a venv and one `pip install`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def fresh_copy(tmp_path: Path) -> Path:
    """The files a clone of this checkout has (as they are now in it), and nothing else."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    copy = tmp_path / "clone"
    for name in listed.decode().split("\0"):
        if name and (ROOT / name).is_file():  # a file deleted but not yet committed: gone
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    return copy


@pytest.mark.slow
def test_demo_without_a_compiler_runs_on_the_python_core(tmp_path: Path) -> None:
    """CC=false make demo in a fresh copy: one line names the fallback, MATCH, no traceback, and
    no test tool installed."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    clone = fresh_copy(tmp_path)
    # Nothing of this run's own make, venv or settings leaks into the newcomer's.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("L3TOL1_", "MAKE", "PYTHON")) and k not in ("MFLAGS", "VIRTUAL_ENV")
    }
    env["CC"] = "false"
    result = subprocess.run(
        ["make", "demo", f"PYTHON={sys.executable}"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "MATCH: out/l1_data.csv is byte-identical" in result.stdout
    fallback = [line for line in output.splitlines() if "pure-Python core" in line]
    assert len(fallback) == 1, output[-4000:]
    assert "Traceback" not in output and "error:" not in output.lower()
    assert "core=python" in output  # the run's start line agrees
    venv = clone / ".venv" / "bin"
    assert (venv / "l3tol1").exists() and not (venv / "pytest").exists()
    assert not list((clone / "service" / "l3tol1" / "core").glob("_compiled*.so"))
