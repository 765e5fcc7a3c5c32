"""`l3tol1 work` (SPEC §13): the books of the partitions this worker owns, rows out.

Every worker of a feed pulls every partition's consumer as a member of one priority group with
policy ``pinned_client``: JetStream gives each partition to one worker at a time, and moves it
to another when its owner stops pulling for `PIN_TIMEOUT` (dead, stopped, cut off).

The checkpoint of a partition has two parts, both in the L1 stream. The rows: after each pull
the owner publishes the L1 rows it made as one atomic batch, the first message fenced with
``Nats-Expected-Last-Subject-Sequence`` on the partition's L1 subject, every message saying how
far in the L3 stream the rows reach (``L3tol1-Covers``): rows and position are stored together,
or neither. The books: every ``--checkpoint-interval`` seconds (and at the end of the feed) the
batch also carries the state (the books and the L3 message they include) on the state subject.

A new owner reads both: it restores the books of the last state, makes the consumer deliver again
from the message after it, and re-applies what follows; rows of the messages the L1 subject
already covers are dropped (applying the same events to the same books makes the same rows),
later ones published. So a commit costs the rows only, not a copy of the books. A stale owner
(paused past its pin, say) fails the fence, so it can never publish, and drops the partition.
The L3 messages are acked after the commit; one applied but not acked is skipped (its sequence
is at or below where the rows reach).
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
from nats.errors import Error as NatsError

from l3tol1.checkpoint import instruments_from_json, instruments_json
from l3tol1.core import load
from l3tol1.core.wire import NS_PER_DAY
from l3tol1.errors import CheckpointError, ConfigError
from l3tol1.jetstream.client import (
    FENCE_FAILED,
    PULL_EXPIRES,
    BatchRejected,
    JetStream,
    PinnedPuller,
    connect,
    retrying,
    stream_seq,
)
from l3tol1.jetstream.wire import (
    COVERS,
    END,
    LAYOUT,
    MAX_BODY,
    PREV,
    ROW_NAMES,
    STATE_PART,
    Names,
)
from l3tol1.log import get_logger
from l3tol1.settings import Settings

__all__ = ["Worker"]

PULL_BATCH = 64  # L3 messages per pull at most, and so per commit
HEARTBEAT = 1.0  # seconds between a worker's "alive" puts in the workers bucket
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class DeliveryGap(Exception):
    """A partition's messages came with one missing: the pull must not be applied."""


@dataclass(slots=True)
class Owned:
    """A partition this worker owns: its books, where they stand, and the fence."""

    instruments: Any
    applied: int = 0  # stream seq of the last L3 message the books include
    covered: int = 0  # ... the last whose rows are published (the L1 subject's L3tol1-Covers)
    fence: int = 0  # stream seq of the L1 subject's last message (0: none yet)
    state_due: float = 0.0  # when the books are next saved (time.monotonic)
    layout: str = "0,0"
    ended: bool = False
    lag: int = 0  # messages of the partition not yet delivered, at the last pull
    anomalies: list[Any] = field(default_factory=list)


class Worker:
    """One `l3tol1 work` process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.names = Names(settings.subject_prefix, settings.feed)
        try:
            self.core = load(settings.core)
        except ImportError as exc:
            raise ConfigError("--core compiled: the compiled core was not built") from exc
        self.log = get_logger()
        self.stopping = False
        self.owned: dict[int, Owned] = {}
        self.id = uuid.uuid4().hex[:16]
        self.partitions = 0
        self.live = 1  # workers of the feed alive (their keys in the workers bucket)
        self.counts = {
            "messages_applied": 0,
            "events_applied": 0,
            "rows_published": 0,
            "commits": 0,
            "state_saves": 0,
            "takeovers": 0,
            "fenced": 0,
            "quarantined": 0,
            "redelivered": 0,
            "delivery_gaps": 0,
        }

    async def run(self) -> None:
        nc = await connect(self.settings.nats_url, f"l3tol1-work-{self.names.feed}")
        js = JetStream(nc, self.names)
        metrics = start_metrics(self.settings, "work", self.summary)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch_stop_signals, self)
                partitions = await js.wait_for_feed(lambda: self.stopping)
                await retrying("the L1 stream", js.ensure_l1_stream)
                self.log.info("start", role="work", feed=self.names.feed, partitions=partitions,
                              core=self.core.name)  # fmt: skip
                for p in range(partitions):
                    await retrying("a consumer", partial(js.ensure_pinned_consumer, p))
                self.partitions = partitions
                kv = await retrying("the workers bucket", js.workers_bucket)
                tg.start_soon(self._heartbeat, kv)
                async with anyio.create_task_group() as owners:
                    for p in range(partitions):
                        owners.start_soon(self._serve, js, p)
                with anyio.move_on_after(2):
                    await kv.delete(self.id)  # the others take this one's share at once
                tg.cancel_scope.cancel()
        finally:
            if metrics is not None:
                metrics.close()
            await nc.close()

    async def _serve(self, js: JetStream, p: int) -> None:
        """Pull partition ``p`` while this worker runs: wait for the pin, then own it."""
        puller = PinnedPuller(js, p)
        await puller.start()
        try:
            while not self.stopping:
                try:
                    await self._step(js, p, puller)
                except (TimeoutError, NatsError, BatchRejected, DeliveryGap) as exc:
                    if isinstance(exc, DeliveryGap):
                        self.counts["delivery_gaps"] += 1
                    # An answer that never came (a paused process, a server failing over): the
                    # outcome of a commit is unknown, so start again from the committed state.
                    if self.owned.pop(p, None) is not None:
                        self.log.warning("partition_reset", partition=p, error=repr(exc)[:200])
                    await anyio.sleep(PULL_EXPIRES)
            if self.owned.pop(p, None) is not None:
                # Stopping: hand the partition over now rather than after PIN_TIMEOUT.
                with anyio.move_on_after(2):
                    await js.unpin(p)
        finally:
            await puller.stop()

    @property
    def share(self) -> int:
        """The most partitions this worker keeps: an even share among the live workers."""
        return -(-self.partitions // max(1, self.live))

    async def _heartbeat(self, kv: Any) -> None:
        """Say this worker is alive (a key that expires with `WORKER_TTL`); count the others."""
        from nats.js.errors import NoKeysError

        while True:
            try:
                await kv.put(self.id, b"1")
                self.live = max(1, len(await kv.keys()))
            except NoKeysError:
                self.live = 1
            except (TimeoutError, NatsError) as exc:  # a server failing over: next beat
                self.log.info("heartbeat_failed", error=repr(exc)[:200])
            await anyio.sleep(HEARTBEAT)

    async def _step(self, js: JetStream, p: int, puller: PinnedPuller) -> None:
        """One pull of partition ``p``: nothing (not its owner), a takeover, or work."""
        if p not in self.owned and len(self.owned) >= self.share:
            await anyio.sleep(PULL_EXPIRES)  # enough partitions: leave this one to others
            return
        if p in self.owned and len(self.owned) > self.share and p == max(self.owned):
            # More workers now: hand over the highest partitions until the share is kept.
            self.owned.pop(p)
            await js.unpin(p)
            self.log.info("partition_released", partition=p, share=self.share, workers=self.live)
            return
        msgs = await puller.pull(PULL_BATCH if p in self.owned else 1)
        if puller.lost_pin:
            # Another worker holds the partition now: what this pull got is not ours to apply
            # (left unacked, it goes to the owner).
            puller.lost_pin = False
            if self.owned.pop(p, None) is not None:
                self.log.warning("partition_lost", partition=p)
            return
        if not msgs:
            return
        if p not in self.owned:
            # Pinned just now: resume from the committed state, not from the messages the
            # server happened to deliver first (the old owner's unacked ones).
            owned = await self._take(js, p)
            await js.reset_consumer(p, owned.applied + 1)
            puller.queue = type(puller.queue)()  # what came before the reset
            self.owned[p] = owned
            return
        await self._apply(js, p, self.owned[p], msgs)

    async def _take(self, js: JetStream, p: int) -> Owned:
        """The state of partition ``p`` as its last owner committed it."""
        self.counts["takeovers"] += 1
        names = self.names
        owned = Owned(self.core.instruments())
        last = await js.get_last(names.l1_stream, names.state(p))
        if last is not None:
            index = int(last.headers[STATE_PART].split("/")[0])
            parts = [last.data]
            for seq in range(last.seq - index + 1, last.seq):
                parts.insert(-1, (await js.get(names.l1_stream, seq)).data)
            state = _decode_state(b"".join(parts), names.state(p))
            owned.instruments.restore(instruments_from_json(state["books"], names.state(p)))
            owned.applied = state["applied"]
            owned.layout = state["layout"]
            owned.ended = state["ended"]
        rows = await js.get_last(names.l1_stream, names.l1(p))
        if rows is not None:
            owned.fence = rows.seq
            owned.covered = int(rows.headers.get(COVERS, "0"))
        owned.state_due = time.monotonic() + self.settings.checkpoint_interval
        self.log.info("partition_taken", partition=p, resumes_after=owned.applied,
                      rows_cover=owned.covered)  # fmt: skip
        return owned

    async def _apply(self, js: JetStream, p: int, owned: Owned, msgs: list[Any]) -> None:
        """Apply the pulled messages; commit their rows (and the books when due) at once; ack."""
        quotes = self.core.quotes()  # the rows of every message pulled, in one container
        applied, ended, end_mark = owned.applied, owned.ended, False
        names: dict[tuple[str, int], str] = {}  # Databento rows: (book key, day) -> name
        for msg in msgs:
            seq = stream_seq(msg)
            if seq <= applied:
                self.counts["redelivered"] += 1
                continue
            headers = msg.headers or {}
            if int(headers.get(PREV, "0")) > applied:
                # The message before this one never came (the server dropped it: a slow
                # consumer): apply nothing of this pull; start again from the committed state.
                raise DeliveryGap(f"stream seq {headers[PREV]} was not delivered before {seq}")
            applied = seq
            owned.layout = headers.get(LAYOUT, owned.layout)
            if END in headers:
                ended = True
                end_mark = seq > owned.covered
                continue
            try:
                events = self.core.unpack_events(msg.data)
                if ROW_NAMES in headers:
                    names.update(_row_names(headers[ROW_NAMES]))
            except (ValueError, TypeError) as exc:
                self.counts["quarantined"] += 1
                self.log.error("message_quarantined", partition=p, stream_seq=seq,
                               reason=str(exc)[:200], size=len(msg.data))  # fmt: skip
                continue
            # Rows a previous owner published already (a takeover's replay): the books only.
            rows = quotes if seq > owned.covered else self.core.quotes()
            owned.instruments.apply(events, rows, owned.anomalies)
            owned.anomalies.clear()
            self.counts["messages_applied"] += 1
            self.counts["events_applied"] += len(events)
        if names:
            quotes = _named(quotes, names)
        now = time.monotonic()
        save = applied > owned.covered and (ended or now >= owned.state_due or self.stopping)
        if applied > owned.covered and (len(quotes) or end_mark or save):
            layout = {LAYOUT: owned.layout, COVERS: str(applied)}
            messages = [(self.names.l1(p), body, dict(layout))
                        for body in self.core.pack_quotes(quotes, MAX_BODY)]  # fmt: skip
            if end_mark:
                messages.append((self.names.l1(p), b"", {**layout, END: "1"}))
            if not messages:  # books to save, no rows: an empty message carries the fence
                messages.append((self.names.l1(p), b"", layout))
            messages[0][2]["Nats-Expected-Last-Subject-Sequence"] = str(owned.fence)
            rows_end = len(messages)
            if save:
                state = _encode_state(owned, applied, ended)
                parts = [state[i : i + MAX_BODY] for i in range(0, len(state), MAX_BODY)]
                for i, part in enumerate(parts, start=1):
                    messages.append((self.names.state(p), part, {STATE_PART: f"{i}/{len(parts)}"}))
            try:
                last = await js.publish_atomic(messages)
            except BatchRejected as exc:
                if exc.code not in FENCE_FAILED:
                    raise
                # Another worker owns the partition now: this one's books are stale.
                self.counts["fenced"] += 1
                self.owned.pop(p, None)
                self.log.warning("fenced", partition=p, detail=str(exc))
                return
            owned.fence = last - (len(messages) - rows_end)
            owned.covered = applied
            if save:
                owned.state_due = now + self.settings.checkpoint_interval
                self.counts["state_saves"] += 1
            self.counts["commits"] += 1
            self.counts["rows_published"] += len(quotes)
        owned.applied = applied
        owned.ended = ended
        owned.lag = msgs[-1].metadata.num_pending
        for msg in msgs:
            await msg.ack()

    def summary(self) -> dict[str, Any]:
        """The counters, the partitions owned and their lag (summary line, metrics)."""
        return {
            **self.counts,
            "partitions_owned": sorted(self.owned),
            "lag": {p: owned.lag for p, owned in sorted(self.owned.items())},
        }


async def watch_stop_signals(role: Any) -> None:
    """Set ``role.stopping`` at SIGTERM, SIGINT or SIGHUP; exit at once at a second one (the
    worker's and the collector's stop, as the file job's, SPEC §8)."""
    with anyio.open_signal_receiver(*_STOP_SIGNALS) as signals:
        async for signum in signals:
            if role.stopping:
                raise SystemExit(128 + signum)
            role.log.info("stopping", signal=signal.Signals(signum).name)
            role.stopping = True


def start_metrics(settings: Settings, role: str, counters: Any) -> Any:
    """The metrics endpoint of a role (``--metrics-port``), serving its counters; or None."""
    if settings.metrics_port is None:
        return None
    from l3tol1.metrics import MetricsServer, RoleCollector

    server = MetricsServer(
        counters,
        lambda: (True, "ok"),
        host=settings.metrics_host,
        port=settings.metrics_port,
        collector=RoleCollector(role, counters),
    )
    server.start()
    get_logger().info("metrics_listening", host=settings.metrics_host, port=server.port)
    return server


def _row_names(text: str) -> dict[tuple[str, int], str]:
    """A message's ``L3tol1-Row-Names`` header.

    :raises ValueError: it is not a list of [book key, day, name].
    """
    found = {}
    for entry in json.loads(text):
        key, day, name = entry
        if not (type(key) is str and type(day) is int and type(name) is str):
            raise ValueError(f"not a row name: {entry!r:.100}")
        found[(key, day)] = name
    return found


def _named(quotes: Any, names: dict[tuple[str, int], str]) -> Any:
    """Databento's quotes named by their book's symbol on their day (as the file job's
    `MboNamer.name_quotes`, from the names the publisher sent)."""

    def name(key: str, time: int) -> str:
        return names.get((key, time // NS_PER_DAY), key)

    if isinstance(quotes, list):
        return [q._replace(instrument=name(q.instrument, q.time)) for q in quotes]
    quotes.rename(name)
    return quotes


def _encode_state(owned: Owned, applied: int, ended: bool) -> bytes:
    import zstandard

    state = {
        "applied": applied,
        "layout": owned.layout,
        "ended": ended,
        "books": instruments_json(owned.instruments.snapshot()),
    }
    return zstandard.ZstdCompressor(level=1).compress(json.dumps(state).encode())


def _decode_state(data: bytes, where: str) -> dict[str, Any]:
    import zstandard

    try:
        state = json.loads(zstandard.ZstdDecompressor().decompress(data))
        if not (
            type(state["applied"]) is int
            and isinstance(state["layout"], str)
            and type(state["ended"]) is bool
        ):
            raise ValueError("bad fields")
    except (zstandard.ZstdError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"worker state on {where} is damaged: {exc}") from exc
    return dict(state)
