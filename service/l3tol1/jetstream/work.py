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

A message is checked whole (`wire.read_l3`) before any of its headers is acted on; one that is
not l3tol1's is quarantined (logged, counted, acked, skipped), and never wedges the partition.
Each L3 message names its subject's message before it (``L3tol1-Prev``): one above what the
worker applied is a delivery gap only when the stream really holds a message of the partition
there (asked of the stream, as it is for what came before a quarantined message); otherwise the
header lies and the message is quarantined.

A feed of a schema of rows (SPEC §14, fixed by its publisher) keeps `core.schemas.Depths` per
partition instead of the L1 books, and publishes the schema's rows (`L1R1` bodies). What the
partition alone cannot know comes as the publisher's marks among its events (`marks.py`): a gap
declared anywhere, the feed's clock for sampled schemas; the end mark writes the last interval.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError

from l3tol1.core.numbers import NS_PER_DAY
from l3tol1.core.schemas import SCHEMAS, Depths, Schema
from l3tol1.core.wire import pack_rows
from l3tol1.errors import ConfigError
from l3tol1.jetstream.client import (
    FENCE_FAILED,
    PULL_EXPIRES,
    BatchRejected,
    JetStream,
    PinnedPuller,
    Stored,
    stream_seq,
)
from l3tol1.jetstream.connection import close, connect, retrying
from l3tol1.jetstream.marks import apply_marked
from l3tol1.jetstream.state import decode_state, encode_state
from l3tol1.jetstream.wire import (
    MAX_BODY,
    PREV,
    Malformed,
    Names,
    decode_layout,
    l1_headers,
    read_l1,
    read_l3,
    read_state_part,
    state_headers,
)
from l3tol1.log import get_logger
from l3tol1.metrics import serve_role_metrics
from l3tol1.run.assembly import load_core
from l3tol1.settings import Settings
from l3tol1.signals import Stop

__all__ = ["Worker"]

PULL_BATCH = 64  # L3 messages per pull at most, and so per commit
HEARTBEAT = 1.0  # seconds between a worker's "alive" puts in the workers bucket
STOP_GRACE = 2.0  # seconds a stopping worker has to finish the pull in hand (and commit it)
LEAVE_WITHIN = 2.0  # seconds to hand its partitions over and leave the workers bucket


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
    # Databento's rows of a schema: (book key, day) -> name, as the publisher sent them
    row_names: dict[tuple[str, int], str] = field(default_factory=dict)


class Worker:
    """One `l3tol1 work` process."""

    def __init__(self, settings: Settings, *, stop: Stop) -> None:
        self.settings = settings
        self.names = Names(settings.subject_prefix, settings.feed)
        self.core = load_core(settings.core)
        self.log = get_logger()
        self.stop = stop
        self.owned: dict[int, Owned] = {}
        self.id = uuid.uuid4().hex[:16]
        self.partitions = 0
        self.schema: Schema = SCHEMAS["l1"]  # the feed's (SPEC §14), known once it exists
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
        """Work until a stop signal (which is heeded from the first instant, connected or not)."""
        metrics = serve_role_metrics(self.settings, "work", self.summary)
        nc = None
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.stop.watch)
                with self.stop.interruptible():
                    nc = await connect(self.settings.nats_url, f"l3tol1-work-{self.names.feed}")
                    js = JetStream(nc, self.names)
                    kv = await self._join(js)
                    self.stop.notify.ready(f"working on feed {self.names.feed}")
                if not self.stop.requested:
                    await self._work(js, kv)
                tg.cancel_scope.cancel()
        finally:
            if metrics is not None:
                metrics.close()
            if nc is not None:
                await close(nc)

    async def _join(self, js: JetStream) -> Any:
        """Wait for the feed; make sure of its L1 stream and consumers; the workers bucket."""
        info = await js.wait_for_feed(lambda: self.stop.requested)
        partitions = info.partitions
        if partitions and self.settings.schema_given and self.settings.schema != info.schema:
            raise ConfigError(
                f"feed {self.names.feed!r} has schema {info.schema}, not --schema"
                f" {self.settings.schema}: leave --schema out (a worker writes its feed's), or"
                " use another --feed"
            )
        self.schema = SCHEMAS[info.schema]
        await retrying("the L1 stream", js.ensure_l1_stream)
        self.log.info("start", role="work", feed=self.names.feed, partitions=partitions,
                      core=self.core.name, schema=self.schema.name)  # fmt: skip
        for p in range(partitions):
            await retrying("a consumer", partial(js.ensure_pinned_consumer, p))
        self.partitions = partitions
        return await retrying("the workers bucket", js.workers_bucket)

    async def _work(self, js: JetStream, kv: Any) -> None:
        """Serve every partition until a stop; then leave."""
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._heartbeat, kv)
            # At a stop, each partition finishes its step (and commits it); after STOP_GRACE,
            # a step that waits for a server that is away is cut: it is committed or not, and
            # either way its successor resumes from what JetStream holds.
            with self.stop.interruptible(grace=STOP_GRACE):
                async with anyio.create_task_group() as owners:
                    for p in range(self.partitions):
                        owners.start_soon(self._serve, js, p)
            tasks.cancel_scope.cancel()  # no heartbeat after this one's key is deleted
        await self._leave(js, kv)

    async def _leave(self, js: JetStream, kv: Any) -> None:
        """Hand the partitions over now rather than after PIN_TIMEOUT, and leave the workers
        bucket so that the others take this one's share at once. Bounded, and skipped when the
        server is away: the pins and the key then expire by themselves."""
        owned, self.owned = sorted(self.owned), {}
        if not js.nc.is_connected:
            return
        with anyio.move_on_after(LEAVE_WITHIN):
            try:
                for p in owned:
                    await js.unpin(p)
                await kv.delete(self.id)
            except (TimeoutError, NatsError) as exc:
                self.log.info("leave_failed", error=repr(exc)[:200])

    async def _serve(self, js: JetStream, p: int) -> None:
        """Pull partition ``p`` while this worker runs: wait for the pin, then own it."""
        puller = PinnedPuller(js, p)
        await puller.start()
        try:
            while not self.stop.requested:
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
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
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
        """The state of partition ``p`` as its last owner committed it (what is not an
        owner's on its subjects is looked past)."""
        self.counts["takeovers"] += 1
        names = self.names
        owned = Owned(None)
        owned.instruments = self._books(owned)
        state = await self._last_state(js, p)
        if state is not None:
            owned.instruments.restore(state["books"])
            owned.row_names.update(state.get("row_names", {}))
            owned.applied = state["applied"]
            owned.layout = state["layout"]
            owned.ended = state["ended"]
        found = await js.get_last(names.l1_stream, names.l1(p))
        if found is not None:
            owned.fence = found.seq  # the fence is on the subject's true last message
        while found is not None:
            try:
                owned.covered = read_l1(found.headers, found.data,
                                        unpack=self._unpack_rows).covers  # fmt: skip
                break
            except Malformed as exc:
                self._quarantine(p, found, str(exc))
                found = await js.previous(names.l1_stream, names.l1(p), found.seq)
        owned.state_due = time.monotonic() + self.settings.checkpoint_interval
        self.log.info("partition_taken", partition=p, resumes_after=owned.applied,
                      rows_cover=owned.covered)  # fmt: skip
        return owned

    def _books(self, owned: Owned) -> Any:
        """A partition's books: the L1 books, or those of the feed's schema of rows, which name
        Databento's rows from what the publisher sent (as the file job's namer does)."""
        if not self.schema.rows:
            return self.core.instruments()
        names = owned.row_names

        def name(key: str, ts_recv: int) -> str:
            return names.get((key, ts_recv // NS_PER_DAY), key)

        return Depths(self.schema, name=name)

    def _unpack_rows(self, body: bytes) -> Any:
        """The rows of an L1 message of this feed: the schema's, or L1 quotes."""
        if self.schema.rows:
            from l3tol1.core.wire import unpack_rows

            return unpack_rows(body, self.schema.depth)
        return self.core.unpack_quotes(body)

    async def _last_state(self, js: JetStream, p: int) -> dict[str, Any] | None:
        """The last whole, readable state saved of partition ``p`` (its parts were stored one
        after the other, by one atomic batch), or None; any other message on the state subject
        is quarantined and looked past (an older state is as good: more is applied again)."""
        stream, subject = self.names.l1_stream, self.names.state(p)
        found = await js.get_last(stream, subject)
        while found is not None:
            try:
                index, count = read_state_part(found.headers)
                if index != count:
                    raise Malformed(f"part {index} of {count} of a state, not its last")
                parts = [found.data]
                for i, seq in enumerate(range(found.seq - count + 1, found.seq), start=1):
                    try:
                        part = await js.get(stream, seq)
                    except NotFoundError:
                        raise Malformed(f"part {i} of {count} is missing") from None
                    if part.subject != subject or read_state_part(part.headers) != (i, count):
                        raise Malformed(f"part {i} of {count} is not at stream seq {seq}")
                    parts.insert(-1, part.data)
                return decode_state(b"".join(parts), self.schema.name)
            except Malformed as exc:
                self._quarantine(p, found, str(exc))
                found = await js.previous(stream, subject, found.seq)
        return None

    def _quarantine(self, p: int, stored: Any, reason: str) -> None:
        """A message that is not l3tol1's (or that lies): logged and counted, never acted on."""
        if isinstance(stored, Stored):
            subject, seq, size = stored.subject, stored.seq, len(stored.data)
        else:  # a delivered message
            subject, seq, size = stored.subject, stream_seq(stored), len(stored.data)
        self.counts["quarantined"] += 1
        self.log.error("message_quarantined", partition=p, subject=subject, stream_seq=seq,
                       reason=reason[:200], size=size)  # fmt: skip

    async def _apply(self, js: JetStream, p: int, owned: Owned, msgs: list[Any]) -> None:
        """Apply the pulled messages; commit their rows (and the books when due) at once; ack.

        :raises DeliveryGap: a message of the partition before one pulled was never delivered.
        """
        depths = owned.instruments if self.schema.rows else None
        # the rows of every message pulled, in one container
        quotes: Any = [] if depths is not None else self.core.quotes()
        applied, ended, end_mark = owned.applied, owned.ended, False
        names: dict[tuple[str, int], str] = {}  # Databento rows: (book key, day) -> name
        for msg in msgs:
            seq = stream_seq(msg)
            if seq <= applied:
                self.counts["redelivered"] += 1
                continue
            try:
                message = read_l3(msg.headers, msg.data, seq=seq, partitions=self.partitions,
                                  unpack=self.core.unpack_events)  # fmt: skip
                problem = None
            except Malformed as exc:
                message, problem = None, str(exc)
            if message is None or message.prev > applied:
                # What came before it on the subject, as the stream holds it: a message of the
                # partition that was not applied never came (the server dropped it: a slow
                # consumer): apply nothing of this pull; start again from the committed state.
                subject = self.names.l3(p)
                before = await js.previous(self.names.l3_stream, subject, seq)
                if before is not None and before.seq > applied:
                    raise DeliveryGap(f"stream seq {before.seq} was not delivered before {seq}")
                if message is not None:
                    problem = (f"{PREV} {message.prev} is not a message of {subject} after"
                               f" stream seq {applied}")  # fmt: skip
            applied = seq  # seen, whatever it is: what follows may name it as its predecessor
            if message is None or problem is not None:
                self._quarantine(p, msg, problem or "")
                continue
            owned.layout = message.layout
            if message.end:
                ended = True
                end_mark = seq > owned.covered
                if depths is not None:  # the last interval's rows (sampled schemas)
                    depths.finish(quotes if end_mark else [])
                continue
            events = message.events
            # Rows a previous owner published already (a takeover's replay): the books only.
            if depths is not None:
                owned.row_names.update(message.row_names)
                rows: Any = quotes if seq > owned.covered else []
                apply_marked(depths, events, message.marks, rows, owned.anomalies,
                             by_line=decode_layout(message.layout)[1])  # fmt: skip
            else:
                names.update(message.row_names)
                rows = quotes if seq > owned.covered else self.core.quotes()
                owned.instruments.apply(events, rows, owned.anomalies)
            owned.anomalies.clear()
            self.counts["messages_applied"] += 1
            self.counts["events_applied"] += len(events)
        if names:
            quotes = _named(quotes, names)
        now = time.monotonic()
        stopping = self.stop.requested
        save = applied > owned.covered and (ended or now >= owned.state_due or stopping)
        if applied > owned.covered and (len(quotes) or end_mark or save):
            l1, headers = self.names.l1(p), partial(l1_headers, layout=owned.layout, covers=applied)
            pack = pack_rows if depths is not None else self.core.pack_quotes
            messages = [(l1, body, headers()) for body in pack(quotes, MAX_BODY)]
            if end_mark:
                messages.append((l1, b"", headers(end=True)))
            if not messages:  # books to save, no rows: an empty message carries the fence
                messages.append((l1, b"", headers()))
            messages[0][2]["Nats-Expected-Last-Subject-Sequence"] = str(owned.fence)
            rows_end = len(messages)
            if save:
                state = encode_state(owned.instruments.snapshot(), applied, owned.layout, ended,
                                     owned.row_names)  # fmt: skip
                parts = [state[i : i + MAX_BODY] for i in range(0, len(state), MAX_BODY)]
                for i, part in enumerate(parts, start=1):
                    messages.append((self.names.state(p), part, state_headers(i, len(parts))))
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


def _named(quotes: Any, names: dict[tuple[str, int], str]) -> Any:
    """Databento's quotes named by their book's symbol on their day (as the file job's
    `MboNamer.name_quotes`, from the names the publisher sent)."""

    def name(key: str, time: int) -> str:
        return names.get((key, time // NS_PER_DAY), key)

    if isinstance(quotes, list):
        return [q._replace(instrument=name(q.instrument, q.time)) for q in quotes]
    quotes.rename(name)
    return quotes
