"""The stop of `l3tol1 work` and `l3tol1 collect` (SPEC §8, §13): a signal, from the first instant.

The first SIGTERM, SIGINT or SIGHUP sets `Stop.requested` and ends every wait a role runs in
`Stop.interruptible` (connecting, waiting for the feed, a fetch...), at once or after a grace
period for work in hand; the role then finishes what it can and exits 0. A second signal exits
at once (128 + its number). Signals that came before the role listened (the CLI's handler keeps
them from the first instant) count as if they came now: SIGTERM is never lost, whatever the role
was doing, a server that answers or not.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import anyio

__all__ = ["STOP_SIGNALS", "Stop"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Stop:
    """Whether a role was told to stop, and the waits that a stop ends."""

    def __init__(self, log: Any, received: Sequence[int] = ()) -> None:
        self.log = log
        self.requested = False
        self._received = list(received)  # signals that came before `watch` listened
        self._scopes: dict[anyio.CancelScope, float] = {}  # a scope: its grace (seconds)

    @contextmanager
    def interruptible(self, grace: float = 0.0) -> Iterator[anyio.CancelScope]:
        """A scope that a stop cancels, ``grace`` seconds after it (at once by default; at once
        too when the stop came already). Its block then ends quietly: check `requested`."""
        scope = anyio.CancelScope()
        self._scopes[scope] = grace
        if self.requested:
            self._end(scope, grace)
        try:
            with scope:
                yield scope
        finally:
            del self._scopes[scope]

    async def watch(self) -> None:
        """Listen for the stop signals until cancelled.

        :raises SystemExit: at a second signal (its status 128 + N).
        """
        with anyio.open_signal_receiver(*STOP_SIGNALS) as signals:
            for signum in self._received:
                self._signal(signum)
            async for signum in signals:
                self._signal(signum)

    def _signal(self, signum: int) -> None:
        if self.requested:
            raise SystemExit(128 + signum)
        self.log.info("stopping", signal=signal.Signals(signum).name)
        self.requested = True
        for scope, grace in self._scopes.items():
            self._end(scope, grace)

    @staticmethod
    def _end(scope: anyio.CancelScope, grace: float) -> None:
        if grace <= 0:
            scope.cancel()
        else:
            scope.deadline = min(scope.deadline, anyio.current_time() + grace)
