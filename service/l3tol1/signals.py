"""Stop signals, handled in one place for every face (SPEC §8): the file job and every role.

    SIGTERM, SIGINT, SIGHUP   first: a clean stop; second: exit at once, status 128 + N

`StopSignals` is installed by the CLI before anything slow is imported, so that a signal is never
met by the default action once l3tol1 runs: it remembers a first signal and exits at a second.
`Stop` then takes over in the event loop: at the first signal (or one remembered from before) it
sets ``requested``, ends the waits run in `Stop.interruptible` (at once, or after a grace for work
in hand), and calls what was registered with `on_stop` (the file job's shutdown deadline); a
second signal exits at once: the last checkpoint only ever claims synced rows, so nothing is lost.

`Stop` also carries the run's systemd notifier (notify.py), the one place every face reaches:
`Stop.watch` feeds the watchdog from the event loop, the first stop sends STOPPING=1, and a face
says READY=1 through ``stop.notify.ready()`` once it has begun.

Only the standard library is imported at the top: the CLI installs `StopSignals` before anything
slow is imported (anyio comes with `Stop`'s first use, in the event loop).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from l3tol1.notify import Notifier

if TYPE_CHECKING:
    import anyio

__all__ = ["STOP_SIGNALS", "Stop", "StopSignals"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class StopSignals:
    """Stop signals that arrive before the event loop listens for them (the CLI's start-up).

    The first is remembered (`Stop` acts on it as soon as it listens); a second one exits at
    once, as it does during a running shutdown.
    """

    def __init__(self) -> None:
        self.received: list[int] = []

    def install(self) -> None:
        """Handle SIGTERM, SIGINT and SIGHUP from now on."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        if self.received:
            os._exit(128 + signum)
        self.received.append(signum)


class Stop:
    """Whether a run was told to stop, the waits that a stop ends, and what it sets off."""

    def __init__(
        self, log: Any, received: Sequence[int] = (), notify: Notifier | None = None
    ) -> None:
        self.log = log
        self.notify = Notifier() if notify is None else notify  # default: systemd is not there
        self.requested = False
        self.signal: str | None = None  # the name of the signal that asked for the stop
        # The CLI's `StopSignals.received`, read when `watch` begins to listen: not a copy, so
        # that a signal until then (while the run is assembled, say) is not lost.
        self._received = received
        self._scopes: dict[anyio.CancelScope, float] = {}  # a scope: its grace (seconds)
        self._callbacks: list[Callable[[], None]] = []

    @contextmanager
    def interruptible(self, grace: float = 0.0) -> Iterator[anyio.CancelScope]:
        """A scope that a stop cancels, ``grace`` seconds after it (at once by default; at once
        too when the stop came already). Its block then ends quietly: check `requested`."""
        import anyio

        scope = anyio.CancelScope()
        self._scopes[scope] = grace
        if self.requested:
            self._end(scope, grace)
        try:
            with scope:
                yield scope
        finally:
            del self._scopes[scope]

    def on_stop(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` at the first stop signal (at once, if it came already)."""
        self._callbacks.append(callback)
        if self.requested:
            callback()

    async def watch(self) -> None:
        """Listen for the stop signals until cancelled; a second one exits the process. Feed
        systemd's watchdog meanwhile: from here, the event loop that every stage runs in."""
        import anyio

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self.notify.keep_alive)
            with anyio.open_signal_receiver(*STOP_SIGNALS) as signals:
                for signum in self._received:
                    self._signal(signum)
                async for signum in signals:
                    self._signal(signum)

    def _signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.requested:
            self.log.warning("forced_exit", signal=name)
            os._exit(128 + signum)
        self.log.info("stopping", signal=name)
        self.notify.stopping()
        self.requested = True
        self.signal = name
        for scope, grace in self._scopes.items():
            self._end(scope, grace)
        for callback in self._callbacks:
            callback()

    @staticmethod
    def _end(scope: anyio.CancelScope, grace: float) -> None:
        if grace <= 0:
            scope.cancel()
        else:
            import anyio

            scope.deadline = min(scope.deadline, anyio.current_time() + grace)
