"""systemd's notifications through the real CLI (issue 20, notify.py): a unix datagram socket
of the test's own is NOTIFY_SOCKET, as systemd would bind it for a ``Type=notify`` unit.

READY=1 comes once the file job's input is open and its output begun (never for an input that
is refused) and once a role is connected and ready; WATCHDOG=1 comes again and again at half
WATCHDOG_USEC while the event loop runs; STOPPING=1 comes at SIGTERM, before a clean exit.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import L1_HEADER, REFERENCE_INPUT, add, cli_env, start_cli, write_l3
from tests.system.jetstream import NatsServer, finish

WATCHDOG_USEC = "200000"  # 0.2 s: a ping every 0.1 s


class NotifySocket:
    """The service manager's end: what the process sent, in order."""

    def __init__(self, address: str) -> None:
        self.address = address  # as NOTIFY_SOCKET gives it ('@' for an abstract name)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.05)
        self.messages: list[str] = []

    def env(self) -> dict[str, str]:
        return cli_env(NOTIFY_SOCKET=self.address, WATCHDOG_USEC=WATCHDOG_USEC)

    def wait_for(self, message: str, count: int = 1, timeout: float = 60) -> None:
        """Receive until ``message`` was sent ``count`` times in all; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.messages.count(message) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {message} x{count} within {timeout}s: {self.messages}")
            try:
                self.messages.extend(self.sock.recv(4096).decode().splitlines())
            except TimeoutError:
                continue

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    """A socket at a path (short enough for AF_UNIX's 108 bytes)."""
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"l3n-{os.getpid()}-{time.monotonic_ns()}"
    folder.mkdir()
    sock = NotifySocket(str(folder / "notify"))
    yield sock
    sock.close()
    shutil.rmtree(folder)


def abstract_socket(name: str) -> NotifySocket:
    return NotifySocket(f"@l3tol1-test-{os.getpid()}-{name}-{time.monotonic_ns()}")


def stop_cleanly(proc: subprocess.Popen[str], notify: NotifySocket) -> None:
    """SIGTERM: STOPPING=1, then exit 0."""
    proc.send_signal(signal.SIGTERM)
    notify.wait_for("STOPPING=1")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-3000:]


class TestFileJob:
    def test_ready_watchdog_and_stopping(self, tmp_path: Path, notify_socket: NotifySocket) -> None:
        """READY once the input is open and the output begun (its header is there), with a
        status; WATCHDOG again and again after it; STOPPING at SIGTERM, then exit 0."""
        src, out = tmp_path / "l3.csv", tmp_path / "l1.csv"
        write_l3(src, [add(0, "1", "BUY", "100.5", "5")])
        proc = start_cli("-i", src, "-o", out, "--follow", "--start-seq", "0",
                         env=notify_socket.env())  # fmt: skip
        try:
            notify_socket.wait_for("READY=1")
            assert out.read_text().startswith(L1_HEADER)
            after = notify_socket.messages.index("READY=1")
            assert notify_socket.messages[after + 1] == f"STATUS=reading {src}"
            pings = notify_socket.messages.count("WATCHDOG=1")
            notify_socket.wait_for("WATCHDOG=1", count=pings + 3)
            stop_cleanly(proc, notify_socket)
        finally:
            proc.kill()
            proc.communicate()
        messages = notify_socket.messages
        assert messages.count("READY=1") == 1
        assert "WATCHDOG=1" not in messages[messages.index("STOPPING=1") :]

    def test_no_ready_for_an_input_refused(
        self, tmp_path: Path, notify_socket: NotifySocket
    ) -> None:
        """An input whose header is refused: exit 2, never READY (the watchdog was fed)."""
        src = tmp_path / "l3.csv"
        src.write_text("not,an,l3,header\n")
        proc = start_cli("-i", src, "-o", tmp_path / "l1.csv", "--follow",
                         env=notify_socket.env())  # fmt: skip
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 2, err[-3000:]
        notify_socket.wait_for("WATCHDOG=1")
        assert "READY=1" not in notify_socket.messages

    def test_a_watchdog_of_another_process_is_not_fed(
        self, tmp_path: Path, notify_socket: NotifySocket
    ) -> None:
        """WATCHDOG_PID names another process: READY, but no WATCHDOG (sd_notify's rule)."""
        env = {**notify_socket.env(), "WATCHDOG_PID": "1"}
        proc = start_cli("-i", REFERENCE_INPUT, "-o", tmp_path / "l1.csv", "--no-follow", env=env)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        notify_socket.wait_for("READY=1")
        assert "WATCHDOG=1" not in notify_socket.messages


class TestRoles:
    def test_each_role_is_ready_once_connected_and_stops(
        self, tmp_path: Path, nats_server: NatsServer
    ) -> None:
        """publish, work and collect, each to an abstract socket ('@' name): READY once it is
        connected and ready, WATCHDOG repeated, STOPPING at SIGTERM and exit 0."""
        sockets = {name: abstract_socket(name) for name in ("publish", "work", "collect")}
        url = ("--nats-url", nats_server.url, "--log-format", "json")
        args = {
            "publish": ("-i", REFERENCE_INPUT, "--follow", "--partitions", "2",
                        "--reject-file", tmp_path / "r.jsonl"),
            "work": (),
            "collect": ("-o", tmp_path / "l1.csv", "--follow"),
        }  # fmt: skip
        procs: dict[str, subprocess.Popen[str]] = {}
        try:
            for name, notify in sockets.items():
                procs[name] = start_cli(name, *url, *args[name], env=notify.env())
                notify.wait_for("READY=1")
            for name, notify in sockets.items():
                assert f"STATUS={'working on' if name == 'work' else name + 'ing'} feed default" \
                    in notify.messages, notify.messages  # fmt: skip
                notify.wait_for("WATCHDOG=1", count=notify.messages.count("WATCHDOG=1") + 3)
            for name in ("publish", "work", "collect"):
                stop_cleanly(procs[name], sockets[name])
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
                    finish(proc)
            for notify in sockets.values():
                notify.close()
