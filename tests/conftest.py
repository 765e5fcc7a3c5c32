"""Shared helpers of every layer: the real CLI in a subprocess (started, stopped, its log and
its files read), writing L3 files, and the fixtures every layer uses (``core``, ``survived``).

Helpers of one layer live with it: tests/system/kills.py (kill -9 loops), tests/system/jetstream.py
(nats-server and the roles), tests/system/conftest.py (their fixtures); inputs shared across
layers in tests/model.py (models), tests/mbo.py (Databento records), tests/fuzz.py (hostile CSV)
and tests/ops_files.py (the operations files).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

# kill -9 counts of the kill tests, shown at the end of the run (`survived` fixture)
_KILLS = pytest.StashKey[list[tuple[str, int]]]()

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
REFERENCE_INPUT = DATA / "l3_data_v3.1.csv"
REFERENCE_OUTPUT = DATA / "expected_l1_data_v3.1.csv"
GOLDEN_SHA256 = "e987d24b35a81aaee794b805b9ca0f3c4fd2f91bc9c07ee7740cd1d33153b874"  # of that file
L1_HEADER = "time,bid_price,ask_price,bid_size,ask_size,seq_num\n"
HEADER = (
    "seq_num,add_order_id,add_side,add_price,add_qty,update_order_id,update_side,update_price,"
    "update_qty,delete_order_id,delete_side,trade_order_id,trade_side,trade_price,trade_qty,time"
)
T = "2021-08-03 01:00:00.1 UTC"


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI subprocess: the source tree first, no stray L3TOL1_* but the
    core the suite runs with (``L3TOL1_CORE=python make test`` runs it on the reference)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("L3TOL1_") or k == "L3TOL1_CORE"}
    env["PYTHONPATH"] = str(ROOT / "service") + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def cli(
    *args: str | os.PathLike,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    **popen: object,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m l3tol1 ARGS` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "l3tol1", *map(str, args)],
        env=env or cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        **popen,  # type: ignore[arg-type]
    )


_running: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_leftover_service() -> Iterator[None]:
    """A test that fails half-way must not leave a following service running."""
    yield
    while _running:
        proc = _running.pop()
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def start_cli(*args: str | os.PathLike, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start `python -m l3tol1 ARGS` in the background (stderr captured)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "l3tol1", *map(str, args)],
        env=env or cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _running.append(proc)
    return proc


def finish(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str]:
    """Stop a running CLI with ``sig``; return its exit status and stderr."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        _, stderr = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
        raise AssertionError("the service did not stop within 10 s") from None
    return proc.returncode, stderr


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a configuration error (exit 2)."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("l3tol1: error: "), result.stderr
    return lines[0]


def log_events(stderr: str) -> list[dict]:
    """The JSON log records of a run's stderr."""
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rows_of(path: Path) -> list[str]:
    """The data rows of an L1 CSV (its header left out)."""
    return path.read_text().splitlines()[1:]


def whole_lines(data: bytes) -> bytes:
    """``data`` up to and with its last newline."""
    return data[: data.rfind(b"\n") + 1]


def line_count(path: Path) -> int:
    """The lines of a file so far (0 while it does not exist)."""
    return path.read_bytes().count(b"\n") if path.exists() else 0


def free_port() -> int:
    """A loopback port free now (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str) -> tuple[int, str]:
    """GET ``url``: the status and the text of the answer, an error status included."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def send_two_signals(proc: subprocess.Popen[str]) -> None:
    """SIGTERM then SIGINT, delivered together: the process is stopped while both are sent,
    so the second one always arrives during the shutdown the first one began."""
    proc.send_signal(signal.SIGSTOP)
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGCONT)


def add(seq: int, oid: str, side: str, price: str, qty: str, time: str = T) -> str:
    return f"{seq},{oid},{side},{price},{qty},,,,,,,,,,,{time}"


def update(seq: int, oid: str, side: str, price: str, qty: str, time: str = T) -> str:
    return f"{seq},,,,,{oid},{side},{price},{qty},,,,,,,{time}"


def delete(seq: int, oid: str, side: str, time: str = T) -> str:
    return f"{seq},,,,,,,,,{oid},{side},,,,,{time}"


def trade(seq: int, oid: str, side: str, price: str, qty: str, time: str = T) -> str:
    return f"{seq},,,,,,,,,,,{oid},{side},{price},{qty},{time}"


def write_l3(path: Path, rows: Iterable[str], header: str = HEADER) -> Path:
    path.write_text(header + "\n" + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def read_checkpoint(path: Path):  # type: ignore[no-untyped-def]
    """The checkpoint stored at ``path``, decoded and checked as l3tol1 does on a restart."""
    from l3tol1.checkpoint import decode

    return decode(path.read_bytes(), path)


def stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes each time a file is replaced or rewritten: (inode, mtime, size), or None."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def book_rows(first: int, last: int) -> list[str]:
    """ADD rows for seqs ``first`` to ``last`` that each change the BBO once both sides are
    there: odd seqs are rising bids, even ones falling asks."""
    return [
        add(s, f"o{s}", "BUY" if s % 2 else "SELL", str(100 + s) if s % 2 else str(10_000 - s), "1")
        for s in range(first, last + 1)
    ]


def catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler installed for ``signum`` (its SigCgt mask)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next(
        (line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), "0"
    )
    return bool(int(mask, 16) >> (signum - 1) & 1)


def wait_listening(proc: subprocess.Popen[str]) -> None:
    """Wait until l3tol1 handles SIGTERM itself (a signal before that meets the default action
    of a process that has not started yet)."""
    wait_for(lambda: catches(proc.pid, signal.SIGTERM) or proc.poll() is not None, 30, "handlers")


def read_offset(pid: int, path: Path) -> int | None:
    """Where process ``pid`` stands in its open file ``path`` (the file offset of its
    descriptor, from /proc), or None when it has no such file open."""
    folder = Path(f"/proc/{pid}/fd")
    try:
        descriptors = list(folder.iterdir())
    except OSError:
        return None
    for fd in descriptors:
        try:
            if os.readlink(fd) != str(path):
                continue
            info = Path(f"/proc/{pid}/fdinfo/{fd.name}").read_text()
        except OSError:
            continue
        return int(info.split()[1])  # "pos:\t<offset>"
    return None


@pytest.fixture(params=["python", "compiled"])
def core(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Each core in turn: the Python reference and the compiled one (which must be built)."""
    from l3tol1.core import load

    return load(request.param)


@pytest.fixture
def survived(request: pytest.FixtureRequest) -> Callable[[str, int], None]:
    """``survived(what, n)``: record that ``what`` survived ``n`` kill -9; the run's summary lists
    every count (so a `make test` log says how many kills each guarantee survived)."""
    counts = request.config.stash.setdefault(_KILLS, [])

    def note(what: str, count: int) -> None:
        counts.append((what, count))

    return note


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    counts = config.stash.get(_KILLS, [])
    if counts:
        terminalreporter.section("kill -9 survived")
        for what, count in counts:
            terminalreporter.line(f"{count:4d}  {what}")


def first_difference(got: str, expected: str) -> str:
    """Where two texts of lines part: for an assertion's message (not the whole files)."""
    got_lines, expected_lines = got.splitlines(), expected.splitlines()
    for number, (a, b) in enumerate(zip(got_lines, expected_lines, strict=False), start=1):
        if a != b:
            return f"line {number}: got {a!r}, expected {b!r}"
    return f"{len(got_lines)} lines, expected {len(expected_lines)}"
