"""The systemd notifier (notify.py) against a real unix datagram socket, in process."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import anyio
import pytest

from l3tol1.notify import Notifier


@pytest.fixture
def manager() -> Iterator[tuple[socket.socket, str]]:
    """The service manager's socket, at an abstract name, and that name as NOTIFY_SOCKET."""
    name = f"@l3tol1-unit-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name[1:])
    sock.settimeout(5)
    yield sock, name
    sock.close()


def pending(sock: socket.socket) -> list[str]:
    """Every datagram waiting on ``sock``, in order."""
    found = []
    sock.setblocking(False)
    try:
        while True:
            found.append(sock.recv(4096).decode())
    except BlockingIOError:
        return found
    finally:
        sock.settimeout(5)


class TestFromEnviron:
    def test_nothing_without_a_socket(self) -> None:
        """No NOTIFY_SOCKET: disabled, and no watchdog even if WATCHDOG_USEC is set."""
        notifier = Notifier.from_environ({"WATCHDOG_USEC": "1000000"})
        assert not notifier.enabled and notifier.watchdog_seconds is None

    def test_watchdog_for_this_process_only(self) -> None:
        """WATCHDOG_USEC counts when WATCHDOG_PID is unset or this process, not another."""
        env = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "3000000"}
        assert Notifier.from_environ(env, pid=7).watchdog_seconds == 3.0
        assert Notifier.from_environ({**env, "WATCHDOG_PID": "7"}, pid=7).watchdog_seconds == 3.0
        assert Notifier.from_environ({**env, "WATCHDOG_PID": "8"}, pid=7).watchdog_seconds is None
        assert Notifier.from_environ({**env, "WATCHDOG_USEC": "x"}).watchdog_seconds is None


class TestSend:
    def test_ready_once_with_status_then_stopping(self, manager: tuple[socket.socket, str]) -> None:
        """READY=1 and its STATUS go in one datagram, once; STOPPING=1 after it."""
        sock, name = manager
        notifier = Notifier(name)
        notifier.ready("reading in.csv")
        notifier.ready("again")
        notifier.stopping()
        assert pending(sock) == ["READY=1\nSTATUS=reading in.csv", "STOPPING=1"]

    def test_a_socket_that_is_gone_costs_nothing(self) -> None:
        """A NOTIFY_SOCKET nobody listens on: sending is silent."""
        notifier = Notifier(f"@l3tol1-nobody-{time.monotonic_ns()}", 1.0)
        notifier.ready()
        notifier.send("WATCHDOG=1")

    def test_keep_alive_pings_at_half_the_interval(
        self, manager: tuple[socket.socket, str]
    ) -> None:
        """WATCHDOG=1 at once and then again and again, until cancelled."""
        sock, name = manager
        notifier = Notifier(name, watchdog_seconds=0.02)

        async def run() -> None:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(notifier.keep_alive)
                for _ in range(3):  # recv fails after the socket's 5 s timeout
                    assert await anyio.to_thread.run_sync(sock.recv, 4096) == b"WATCHDOG=1"
                tasks.cancel_scope.cancel()

        anyio.run(run)

    def test_keep_alive_ends_at_once_without_a_watchdog(self) -> None:
        """No watchdog: keep_alive returns."""
        anyio.run(Notifier("@x").keep_alive)
