"""The connection to NATS of every role (SPEC §13): connecting, closing, retrying.

Connecting (`connect`) is a loop of bounded attempts, so that a role says what it waits for and
can be stopped while no server answers; once connected, nats-py reconnects on its own, forever.
Closing (`close`) is bounded and never fails: at the end of a run a server that is away is not
news. `retrying` calls JetStream again while the servers do not answer (a starting cluster, a
leader election), never a crash.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js.errors import APIError, ServiceUnavailableError

from l3tol1.log import get_logger

__all__ = ["RETRY_FOR", "close", "connect", "retrying"]

T = TypeVar("T")

RETRY_FOR = 60.0  # seconds a publisher retries an unanswered publish (a cluster's election: 4-9 s)
FIRST_TRY = 1.0  # seconds of trying the servers before saying that no server answers...
TRY_EVERY = 5.0  # ... and then of each attempt, after which it is said again
CLOSE_WITHIN = 2.0  # seconds a connection has to close (a server that is away: nothing to say)
NOT_NOW = (10005,)  # "no suitable peers for placement": a starting cluster, a server away


async def connect(urls: str, name: str) -> Client:
    """A connection to one of the comma-separated ``urls``, which then reconnects on its own,
    forever, to any server of the cluster (logged: ``nats_disconnected``, ``nats_reconnected``).

    Until a server answers, the servers are tried again and again, in attempts of `TRY_EVERY`
    seconds (the first `FIRST_TRY`): after each, ``waiting_for_nats`` says which servers are
    tried and the last error; then ``nats_connected`` says which server was joined. It never
    gives up by itself: a stop signal cancels it (nats-py's own first connect, with unlimited
    reconnects, would retry forever out of anyone's reach). An attempt that fails at once is
    followed by a wait for the rest of its time: never a busy loop. The URLs were checked when
    the option was read (`options.nats_urls`).
    """
    servers = urls.split(",")
    log = get_logger()
    last_error = ""
    nc = Client()

    async def on_error(exc: Exception) -> None:  # each failed try of a server
        nonlocal last_error
        last_error = repr(exc)[:200]

    async def on_disconnect() -> None:
        if not nc.is_closed:  # not our own close at the end
            log.warning("nats_disconnected", reconnecting_to=servers)

    async def on_reconnect() -> None:
        log.info("nats_reconnected", server=_joined(nc))

    loop = asyncio.get_running_loop()
    began, attempt = loop.time(), FIRST_TRY
    while True:
        ends = loop.time() + attempt
        try:
            with anyio.fail_after(attempt):
                await nc.connect(
                    servers=servers,
                    name=name,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.2,  # type: ignore[arg-type]  # seconds (typed int)
                    connect_timeout=2,
                    allow_reconnect=True,
                    error_cb=on_error,
                    disconnected_cb=on_disconnect,
                    reconnected_cb=on_reconnect,
                )
            break
        except (TimeoutError, OSError, NatsError) as exc:
            await close(nc)
            log.warning("waiting_for_nats", servers=servers, waited_s=round(loop.time() - began),
                        error=last_error or repr(exc)[:200])  # fmt: skip
            await anyio.sleep(max(0.0, ends - loop.time()))
            nc, attempt = Client(), TRY_EVERY
        except BaseException:  # cancelled: stopped while waiting
            await close(nc)
            raise
    log.info("nats_connected", server=_joined(nc), servers=servers)
    return nc


def _joined(nc: Client) -> str:
    url = nc.connected_url
    return "" if url is None else f"{url.scheme}://{url.hostname}:{url.port}"


async def close(nc: Client) -> None:
    """Close a connection within `CLOSE_WITHIN` seconds, whatever its state, even in a cancelled
    scope, and never fail: with its server away, nats-py fails to close in several ways (it
    writes what it buffered to a transport already closed: a RuntimeError), none of which is
    news at the end of a run."""
    with anyio.move_on_after(CLOSE_WITHIN, shield=True):
        try:
            await nc.close()
        except Exception as exc:
            get_logger().info("nats_close_failed", error=repr(exc)[:200])


async def retrying(what: str, call: Callable[[], Awaitable[T]]) -> T:
    """``call()`` again while the servers do not answer (starting, electing a leader: 4-9 s in
    a cluster), for up to `RETRY_FOR` seconds; then its error."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + RETRY_FOR
    while True:
        try:
            return await call()
        except (TimeoutError, NatsError) as exc:
            # An answer that says no (a bad config, a missing stream) is not retried; one that
            # says "not now" is: unavailable (503), or no peers to place a stream on yet (a
            # cluster whose servers are still meeting, or one server away).
            refused = isinstance(exc, APIError) and not (
                isinstance(exc, ServiceUnavailableError) or exc.err_code in NOT_NOW
            )
            if refused or loop.time() > give_up:
                raise
            get_logger().info("jetstream_retry", what=what, error=repr(exc)[:200])
            await asyncio.sleep(0.5)
