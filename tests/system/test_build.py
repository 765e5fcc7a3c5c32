"""The package build, as the Dockerfile's build stage and a user's `pip install .` run it.

Each test builds a wheel from a copy of this checkout (no build products in it), installs it in
a directory of its own and runs the installed service on the reference data. `--no-deps`: the
dependencies are those of this test environment already; what is under test is our own build
(Cython in pip's isolated build environment, setup.py's optional extension).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REFERENCE_INPUT, REFERENCE_OUTPUT, ROOT

SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "service")


def copy_sources(tmp_path: Path) -> Path:
    """A clean copy of the sources (as the Dockerfile copies them): no build products."""
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.c", "*.egg-info")
            shutil.copytree(ROOT / name, src / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, src / name)
    return src


def build_wheel(tmp_path: Path, **env: str) -> Path:
    """`pip wheel` on a clean copy of the sources."""
    src = copy_sources(tmp_path)
    wheels = tmp_path / "wheels"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels),
         "."],
        cwd=src,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = wheels.glob("l3tol1-*.whl")
    return wheel


def run_installed(tmp_path: Path, wheel: Path) -> tuple[str, Path]:
    """Install the wheel into its own directory; convert the reference data with it."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--target", str(target), str(wheel)],
        check=True,
        timeout=300,
    )  # fmt: skip
    out = tmp_path / "l1.csv"
    env = {k: v for k, v in os.environ.items() if not k.startswith("L3TOL1_")}
    env["PYTHONPATH"] = str(target)  # the installed copy first, not this checkout
    result = subprocess.run(
        [sys.executable, "-c",
         "import sys, l3tol1; assert l3tol1.__file__.startswith(sys.argv[1]), l3tol1.__file__; "
         "from l3tol1.cli import main; sys.exit(main(sys.argv[2:]))",
         str(target), "-i", str(REFERENCE_INPUT), "-o", str(out), "--no-follow",
         "--log-format", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert out.read_bytes() == REFERENCE_OUTPUT.read_bytes()
    return result.stderr, target


def compiled_in(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        return [n for n in zf.namelist() if n.startswith("l3tol1/core/_compiled.")]


def extension_modules(wheel: Path) -> set[str]:
    """The compiled modules a wheel carries (``l3tol1/core/cy/feed`` for its .so)."""
    with zipfile.ZipFile(wheel) as zf:
        return {n.split(".")[0] for n in zf.namelist() if n.endswith(".so")}


# Every Cython module of the compiled core: the one Python imports and its pieces.
PYX = {
    str(p.relative_to(ROOT / "service").with_suffix(""))
    for p in (ROOT / "service" / "l3tol1" / "core").rglob("*.pyx")
}


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no cc")
def test_wheel_carries_the_compiled_core(tmp_path: Path) -> None:
    """The Docker build stage's command: the wheel has the compiled core, every module of it,
    which then runs."""
    wheel = build_wheel(tmp_path, L3TOL1_REQUIRE_COMPILED="1")
    names = compiled_in(wheel)
    assert any(n.endswith(".so") for n in names), names
    assert extension_modules(wheel) == PYX and len(PYX) == 9
    log, _ = run_installed(tmp_path, wheel)
    assert '"core": "compiled"' in log


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no cc")
def test_the_sdist_builds_the_compiled_core(tmp_path: Path) -> None:
    """The source distribution holds every .pyx and .pxd (MANIFEST.in), and the stub: a wheel
    built from it alone carries the whole compiled core."""
    src = copy_sources(tmp_path)
    result = subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path / "sdist")],
        cwd=src,
        env={**os.environ, "L3TOL1_NO_COMPILE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (sdist,) = (tmp_path / "sdist").glob("l3tol1-*.tar.gz")
    with tarfile.open(sdist) as tar:
        members = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    sources = {f"service/{m}.pyx" for m in PYX} | {"service/l3tol1/core/_compiled.pyi"}
    sources |= {str(p.relative_to(ROOT)) for p in (ROOT / "service" / "l3tol1").rglob("*.pxd")}
    assert sources <= members, sources - members
    wheels = tmp_path / "wheels"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels),
         str(sdist)],
        env={**os.environ, "L3TOL1_REQUIRE_COMPILED": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = wheels.glob("l3tol1-*.whl")
    assert extension_modules(wheel) == PYX


def test_without_a_compiler_the_install_falls_back_to_python(tmp_path: Path) -> None:
    """A machine where compiling fails (here: the C compiler is `false`) still installs, and
    the service runs on the Python core, with the same output."""
    wheel = build_wheel(tmp_path, CC="false", LDSHARED="false")
    assert not [n for n in compiled_in(wheel) if n.endswith(".so")]
    log, _ = run_installed(tmp_path, wheel)
    assert '"core": "python"' in log


def test_a_required_compile_that_fails_fails_the_build(tmp_path: Path) -> None:
    """L3TOL1_REQUIRE_COMPILED (the Docker build stage, `make`): no silent fallback."""
    with pytest.raises(AssertionError, match="error"):
        build_wheel(tmp_path, CC="false", LDSHARED="false", L3TOL1_REQUIRE_COMPILED="1")
