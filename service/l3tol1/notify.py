"""systemd's service notifications (``Type=notify``, ``WatchdogSec=``), without a systemd library.

    READY=1      the run has begun: the file job's input is open, a role is connected and ready
    WATCHDOG=1   every half ``WATCHDOG_USEC``, from the event loop: a loop that is stuck stops
                 sending it, and systemd kills and restarts the service
    STOPPING=1   at the first stop signal

Each is one datagram to the unix socket that systemd names in ``NOTIFY_SOCKET`` (a path, or an
abstract name written with a leading ``@``), as sd_notify(3) sends it. Without the variable (not
run by systemd) nothing is sent. A notification that cannot be sent is dropped: it must never
cost a row, and systemd's own timeouts tell the operator. `Stop` (signals.py) owns the notifier,
so every face notifies from the same place.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

__all__ = ["Notifier"]


class Notifier:
    """The notifications of one process to its service manager.

    :param address: the socket (``NOTIFY_SOCKET``); None sends nothing.
    :param watchdog_seconds: the watchdog's interval, when it is for this process.
    """

    def __init__(self, address: str | None = None, watchdog_seconds: float | None = None) -> None:
        if address is not None and address.startswith("@"):
            address = "\0" + address[1:]  # an abstract socket's name
        self._address = address if address else None
        self.watchdog_seconds = watchdog_seconds if self._address is not None else None
        self._ready = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], pid: int | None = None) -> Notifier:
        """The notifier systemd set up through ``environ``: ``NOTIFY_SOCKET``, and the watchdog
        ``WATCHDOG_USEC`` when ``WATCHDOG_PID`` is unset or this process (``pid``, default ours):
        a watchdog set for a parent is not ours to feed."""
        watchdog = None
        usec = environ.get("WATCHDOG_USEC", "")
        owner = environ.get("WATCHDOG_PID", "")
        mine = str(os.getpid() if pid is None else pid)
        if usec.isdigit() and int(usec) > 0 and owner in ("", mine):
            watchdog = int(usec) / 1e6
        return cls(environ.get("NOTIFY_SOCKET") or None, watchdog)

    @property
    def enabled(self) -> bool:
        """Whether notifications go anywhere."""
        return self._address is not None

    def send(self, state: str) -> None:
        """Send ``state`` (``KEY=value`` lines), or nothing when it cannot be sent."""
        if self._address is None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)  # a full queue drops it: the event loop never waits
                sock.sendto(state.encode(), self._address)
        except OSError:
            pass

    def ready(self, status: str = "") -> None:
        """READY=1 (once; later calls send nothing), with a status line for `systemctl status`."""
        if self._ready:
            return
        self._ready = True
        self.send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def stopping(self) -> None:
        """STOPPING=1: the service stops by itself, within its shutdown deadline."""
        self.send("STOPPING=1")

    async def keep_alive(self) -> None:
        """WATCHDOG=1 every half watchdog interval until cancelled (at once without one)."""
        if self.watchdog_seconds is None:
            return
        import anyio

        while True:
            self.send("WATCHDOG=1")
            await anyio.sleep(self.watchdog_seconds / 2)
