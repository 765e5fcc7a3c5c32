"""`l3tol1 publish` (SPEC §13): the file job's front half, publishing ordered events.

The input is read, parsed, rejected and resequenced exactly as by the file job (`Pipeline`);
where the file job applies events to the books, the publisher sends them to the partition of
their instrument, in seq order, a batch of consecutive events per message.

Exactly once, from the stream itself: at start the publisher reads the last l3tol1 message of
every partition (its ``L3tol1-Last-Seq`` header: the last event it holds) and skips every event
at or below it, so a publisher that restarts anywhere, even from the start of its input,
publishes nothing twice. Each message is published with ``Nats-Expected-Last-Subject-Sequence``
(a second publisher of the same feed is refused, never interleaved) and a ``Nats-Msg-Id`` (a
retry after a lost acknowledgement is stored once).

Anyone may publish on a partition's subject. The fence follows the subject's true last message
(JetStream sees every message), but what the publisher holds as published comes from the last
message that is l3tol1's (`wire.read_l3`): messages that are not (foreign) are looked past, at
start and when a fence fails, and logged (``foreign_messages_skipped``); only an l3tol1 message
that another publisher wrote refuses this one (exit 2: two publishers of one feed are a
configuration error, which a unit with ``RestartPreventExitStatus=2`` does not restart).

The feed's schema (SPEC §14) is fixed with its partition count when the publisher creates it;
for a schema of rows, each partition's messages also carry the publisher's marks (a gap, the
feed's clock: `jetstream.marks`), placed among its events and covered by ``L3tol1-Last-Seq``
like them, so that a restarted publisher neither loses nor repeats one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream, TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream

from l3tol1.core.naming import MboNamer
from l3tol1.core.numbers import NS_PER_DAY
from l3tol1.core.schemas import schema_named
from l3tol1.core.wire import EVENTS_MAGIC, partition_of
from l3tol1.errors import ConfigError, L3Error
from l3tol1.jetstream.client import (
    FENCE_FAILED,
    BatchRejected,
    JetStream,
    Stored,
)
from l3tol1.jetstream.connection import close, connect, retrying
from l3tol1.jetstream.marks import Mark, MarkMaker, encode_marks
from l3tol1.jetstream.wire import (
    MAX_BODY,
    L3Message,
    Malformed,
    Names,
    encode_body,
    encode_layout,
    l3_headers,
    read_l3,
)
from l3tol1.log import SafeStream, get_logger
from l3tol1.run.assembly import Parts, assemble
from l3tol1.run.batch import Batch
from l3tol1.run.pipeline import Pipeline
from l3tol1.run.stages import Health
from l3tol1.settings import Settings
from l3tol1.signals import Stop

__all__ = ["PublishStage", "publish_pipeline"]


def publish_pipeline(
    settings: Settings, *, stop: Stop, stderr: SafeStream | None = None
) -> Pipeline:
    """The file job up to the resequencer, then JetStream (`PublishStage`): no L1 output, no
    books; the rejects and the checkpoint as the file job's.

    :raises ConfigError: the run is impossible (the file job's reasons, ``--instruments``, no
        place for the rejects).
    """
    if settings.instruments is not None:  # refused before any file is created
        raise ConfigError(
            "--instruments is not supported by publish: every instrument is published"
            " (leave it out, and select the instruments from the collected rows)"
        )
    # The rows are the workers'. Rejects stay local: --reject-file, else beside the checkpoint
    # (whose state they are part of); never a file the user did not name in whatever the
    # working directory is.
    if settings.reject_file is None:
        if settings.checkpoint is None:
            raise ConfigError(
                "publish needs --reject-file PATH for the rows it rejects (or --checkpoint PATH:"
                " they then go to PATH.rejects.jsonl)"
            )
        settings = replace(settings, reject_file=Path(f"{settings.checkpoint}.rejects.jsonl"))
    parts = assemble(settings, rows=False)

    def publisher(parts: Parts) -> PublishStage:
        return PublishStage(settings, parts.core, parts.namer, follow=parts.follow, stop=stop)

    return Pipeline(settings, parts, publisher, stop=stop, stderr=stderr, ready_at_start=False)


FLUSH_BODY = 256 * 1024  # a partition's message is sent once this full (or when nothing waits)
# A schema of rows: events per message fewer, so that the marks among them stay well under the
# 64 KiB NATS allows a message's headers (a mark or two per event at worst, a few bytes each).
MARKED_BODY = MAX_BODY // 4
MARKS_TEXT = 48 * 1024  # a message's marks header at most (about)
# zstd level of the L3 bodies: level 1 packs the events about 5 times smaller for ~0.25 CPU-s
# per 1M events, less than the server saves taking in, storing and delivering the bytes.
ZSTD_LEVEL = 1
# Full messages waiting for their partition's previous one to be stored, at most (bytes before
# compression): past it the publisher waits for the server rather than read on.
UNSENT_BODY = 8 * 1024 * 1024


@dataclass(slots=True)
class Pending:
    """A partition's next message: packed events not sent yet."""

    first: int  # where its first event is (seq, or Databento's record index)
    last: int = -1
    count: int = 0
    size: int = len(EVENTS_MAGIC)
    records: list[memoryview] = field(default_factory=list)
    names: dict[tuple[str, int], str] = field(default_factory=dict)
    marks: list[Mark] = field(default_factory=list)
    marks_text: int = 0  # the size of its marks header

    def add(self, body: bytes, last: int, count: int, names: dict[Any, str] | None) -> None:
        self.records.append(memoryview(body)[len(EVENTS_MAGIC) :])
        self.size += len(body) - len(EVENTS_MAGIC)
        self.last = max(self.last, last)
        self.count += count
        if names:
            self.names.update(names)

    def mark(self, mark: Mark) -> None:
        """A mark after the events added so far (the partition's next ones are later)."""
        before = self.marks[-1] if self.marks else Mark(0, "")
        text = len(
            encode_marks(
                (
                    mark._replace(
                        place=mark.place - before.place, interval=mark.interval - before.interval
                    ),
                )
            )
        )
        self.marks.append(mark)
        self.marks_text += text + 1
        self.size += text + 1
        self.last = max(self.last, mark.place)

    def body(self) -> bytes:
        """Its events; none when it carries marks alone."""
        return EVENTS_MAGIC + b"".join(self.records) if self.records else b""


class PublishStage:
    """The publisher's tail of the pipeline: ordered events to their partitions' subjects;
    rejects (and the checkpoint's cuts, which hold no books) passed on to the writer.

    :param follow: the input is followed (tail -F).
    :param stop: a stop signal ends connecting at once.
    """

    rate_counter = "events_published"

    def __init__(
        self, settings: Settings, core: Any, namer: MboNamer, *, follow: bool, stop: Stop
    ) -> None:
        self.settings = settings
        self.core = core  # packs the events, in C when compiled
        self.namer = namer  # the names of Databento's rows, by book key and day
        self.follow = follow
        self.stop = stop
        self.names = Names(settings.subject_prefix, settings.feed)
        self.partitions = settings.partitions
        self.js: JetStream | None = None
        self.fence = [0] * self.partitions  # the stream seq of each subject's last message
        # The last event each partition holds: its seq (Databento: its record index).
        self.last_seq = [-1] * self.partitions
        self.ended = [False] * self.partitions
        self.pending: dict[int, Pending] = {}  # each partition's next message
        self.sealed: dict[int, list[Pending]] = {}  # full ones, not sent yet
        # A partition's messages go one after the other (each is fenced on the one before), by a
        # task of its own while the publisher reads on: these partitions have one running.
        self.sending: set[int] = set()
        self.send_now = False  # a partition's next message goes once its sender is free
        self.stored = anyio.Event()  # set (and replaced) when a sender stores one or stops
        self.senders: TaskGroup | None = None
        self.layout = "0,0"
        self.schema = schema_named(settings.schema)
        # A schema of rows needs the feed's gaps (and clock) in every partition (marks.py).
        self.marker = MarkMaker(self.schema.interval, self.partitions) if self.schema.rows else None
        self.max_body = MARKED_BODY if self.schema.rows else MAX_BODY
        self.marks_published = 0
        self.events_published = 0
        self.messages_published = 0
        self.events_already_published = 0
        self.foreign_skipped = 0  # messages on the partitions' subjects that are not l3tol1's
        self.last_seq_out: int | None = None  # seq of the last event in the stream from this run
        self.log = get_logger()

    def counters(self) -> dict[str, Any]:
        """What was published, over the run's counters (no books: ``last_seq`` is the last
        event in the stream)."""
        return {
            "last_seq": self.last_seq_out,
            "events_published": self.events_published,
            "messages_published": self.messages_published,
            "events_already_published": self.events_already_published,
            "marks_published": self.marks_published,
            "foreign_messages_skipped": self.foreign_skipped,
        }

    async def start(self) -> JetStream:
        """Connect, create the stream (or check its partition count), learn what it holds."""
        nc = await connect(self.settings.nats_url, f"l3tol1-publish-{self.names.feed}")
        try:
            js = JetStream(nc, self.names)
            await retrying(
                "the L3 stream",
                partial(js.ensure_l3_stream, self.partitions, self.settings.schema),
            )
            for p in range(self.partitions):
                await self._learn(js, p)
        except BaseException:
            await close(nc)
            raise
        self.js = js
        return js

    async def _learn(self, js: JetStream, p: int) -> None:
        """Where partition ``p`` stands: its subject's last message (the fence), and the last
        l3tol1 message at or before it (what it holds)."""
        stream, subject = self.names.l3_stream, self.names.l3(p)
        found = await retrying("a partition", partial(js.get_last, stream, subject))
        if found is None:
            return
        self.fence[p] = found.seq
        foreign = 0
        while found is not None:
            message = self._ours(found)
            if message is not None:
                self.last_seq[p] = message.last_seq
                self.ended[p] = message.end
                break
            foreign += 1
            found = await retrying("a partition", partial(js.previous, stream, subject, found.seq))
        if foreign:
            self.foreign_skipped += foreign
            self.log.warning("foreign_messages_skipped", subject=subject, count=foreign,
                             fence=self.fence[p])  # fmt: skip

    def _ours(self, stored: Stored) -> L3Message | None:
        """A stored message as an l3tol1 message, or None when it is not one."""
        try:
            return read_l3(stored.headers, stored.data, seq=stored.seq,
                           partitions=self.partitions, unpack=self.core.unpack_events)  # fmt: skip
        except Malformed:
            return None

    async def run(
        self, receive: ObjectReceiveStream[Batch], send: ObjectSendStream[Batch], health: Health
    ) -> None:
        js = None
        with self.stop.interruptible():  # connecting: a stop ends it at once
            js = await self.start()
            self.stop.notify.ready(f"publishing feed {self.names.feed}")
        if js is None:
            # Stopped before the stream could be reached: nothing is published, and nothing goes
            # on to the writer (a checkpoint would claim events the stream does not hold).
            async with receive, send:
                async for _ in receive:
                    pass
            return
        last_seq: int | None = None
        try:
            async with receive, send, anyio.create_task_group() as senders:
                self.senders = senders
                async for batch in receive:
                    health.take("apply")
                    if batch.layout is not None:
                        await self._flush(js, everything=True, wait=True)  # the old layout's
                        self.layout = encode_layout(batch.layout)
                    if batch.ordered and self.follow:
                        raise ConfigError(
                            "publish cannot follow Databento MBO input: its records are placed"
                            " by their index in the file, which a rotation starts again; use"
                            " --no-follow"
                        )
                    if batch.events:
                        marks = None
                        if self.marker is not None:
                            marks = self.marker.marks(batch.events, batch.gaps or (),
                                                      by_line=batch.ordered)  # fmt: skip
                        self._add(batch.events, batch.ordered, marks)
                        last_seq = batch.events[len(batch.events) - 1].seq
                    # Small messages wait for more while more batches are queued behind this
                    # one (the publisher is behind), and always without --follow (no latency to
                    # keep: fewer, bigger messages); when following they go whenever nothing is
                    # queued. All are in the stream before a checkpoint and at the end;
                    # otherwise the publisher reads on while they are stored.
                    queued = isinstance(receive, MemoryObjectReceiveStream) and (
                        receive.statistics().current_buffer_used > 0
                    )
                    durable = batch.end_of_input or batch.cut is not None
                    idle = self.follow and not queued
                    await self._flush(js, everything=durable or idle, wait=durable)
                    if durable and last_seq is not None:  # sent now, or found in the stream
                        self.last_seq_out = last_seq
                    if batch.end_of_input:
                        await self._end(js)
                    # A cut's events are in the stream now: its checkpoint may be saved.
                    batch.events = None
                    await send.send(batch)  # the rejects, for the writer
                    health.done("apply")
                await self._flush(js, everything=True, wait=True)  # stopped: what was read
                if last_seq is not None:
                    self.last_seq_out = last_seq
        finally:
            await close(js.nc)  # shielded: a failure that ends the run is not lost to it

    def _add(self, events: Any, databento: bool, marks: list[list[Mark]] | None) -> None:
        """Pack events into their partitions' next messages, and each partition's ``marks``
        (in place order) into its: each with the partition's first event at or after its
        place, else after its last one.

        Databento's records (``databento``) are placed by their index in the input, not by
        their (venue) sequence numbers, and their messages say the names of their books' rows
        (a book is keyed by publisher and instrument id; its rows take the symbol of their day).
        """
        packed, skipped = self.core.pack_events(
            events, self.partitions, self.last_seq, self.max_body, by_line=databento
        )
        self.events_already_published += skipped
        names: dict[int, dict[tuple[str, int], str]] = {}
        if databento:
            for key, day in self.core.instrument_days(events):
                name = self.namer.name(key, day * NS_PER_DAY)
                names.setdefault(partition_of(key, self.partitions), {})[(key, day)] = name
        # Each partition's marks not yet given to a message: those it holds already (a publisher
        # that restarted) are left out, as its events are.
        left = {
            p: [m for m in found if m.place > self.last_seq[p]]
            for p, found in enumerate(marks or ())
            if found
        }
        for p, body, first, last, count in packed:
            part = self.pending.get(p)
            if part is not None and (
                part.size + len(body) - len(EVENTS_MAGIC) > self.max_body
                or part.marks_text > MARKS_TEXT // 2  # room for the marks among ``body``'s
            ):
                self.sealed.setdefault(p, []).append(part)
                part = None
            if part is None:
                part = self.pending[p] = Pending(first)
            ahead = left.get(p, [])
            taken = 0
            while taken < len(ahead) and ahead[taken].place <= last:
                part.mark(ahead[taken])
                taken += 1
            del ahead[:taken]
            part.add(body, last, count, names.get(p))
        for p, ahead in left.items():
            for mark in ahead:
                part = self.pending.get(p)
                if part is not None and (
                    part.size > self.max_body - 64 or part.marks_text > MARKS_TEXT
                ):
                    self.sealed.setdefault(p, []).append(part)
                    part = None
                if part is None:
                    part = self.pending[p] = Pending(mark.place)
                part.mark(mark)

    async def _flush(self, js: JetStream, *, everything: bool, wait: bool = False) -> None:
        """Send the messages that are full (``everything``: all of them, a partition's next one
        once its previous one is stored); ``wait``: until all are stored. Otherwise wait only
        while more than `UNSENT_BODY` of full messages wait for the server.

        The partitions at once, so that a flush costs one round trip to the server, not P; a
        partition's messages one after the other, by its sender task, while the publisher reads
        on: events that come while a partition's message is stored join its next one (a bigger
        message, not a wait). The senders run in the stage's task group: a partition that fails
        stops the others, and every failure reaches the run.
        """
        assert self.senders is not None
        self.send_now = everything
        for p, part in list(self.pending.items()):
            if wait or (p not in self.sending and part.size >= min(FLUSH_BODY, self.max_body)):
                self.sealed.setdefault(p, []).append(part)
                del self.pending[p]
        for p in set(self.sealed).union(self.pending if everything else ()):
            if p not in self.sending:
                self.sending.add(p)
                self.senders.start_soon(self._send_partition, js, p)
        while self.sending if wait else self._unsent() > UNSENT_BODY:
            await self.stored.wait()

    def _unsent(self) -> int:
        return sum(part.size for parts in self.sealed.values() for part in parts)

    async def _send_partition(self, js: JetStream, p: int) -> None:
        """Send partition ``p``'s full messages, then its next one when it is due, until none
        is left to send now."""
        try:
            while True:
                parts = self.sealed.get(p)
                if parts:
                    part = parts.pop(0)
                    if not parts:
                        del self.sealed[p]
                elif p in self.pending and (
                    self.send_now or self.pending[p].size >= min(FLUSH_BODY, self.max_body)
                ):
                    part = self.pending.pop(p)
                else:
                    return
                # In a thread (zstd lets go of the GIL): the event loop parses on meanwhile.
                body, encoding = await anyio.to_thread.run_sync(
                    encode_body, part.body(), ZSTD_LEVEL
                )
                await self._send(js, p, body, str(part.first), part.last, names=part.names,
                                 marks=part.marks, encoding=encoding)  # fmt: skip
                self.last_seq[p] = part.last
                self.events_published += part.count
                self.marks_published += len(part.marks)
                self._wake()
        finally:
            self.sending.discard(p)
            self._wake()

    def _wake(self) -> None:
        """Tell a flush that waits that a sender stored a message or stopped."""
        self.stored.set()
        self.stored = anyio.Event()

    async def _end(self, js: JetStream) -> None:
        """Each partition's end mark, the partitions at once (one round trip, not P)."""

        async def end(p: int) -> None:
            await self._send(js, p, b"", "end", self.last_seq[p], end=True)
            self.ended[p] = True

        async with anyio.create_task_group() as tg:
            for p in range(self.partitions):
                if not self.ended[p]:
                    tg.start_soon(end, p)

    async def _send(
        self,
        js: JetStream,
        p: int,
        body: bytes,
        key: str,
        last_seq: int,
        *,
        end: bool = False,
        names: dict[tuple[str, int], str] | None = None,
        marks: list[Mark] | None = None,
        encoding: str | None = None,
    ) -> None:
        """Publish one message on partition ``p``, fenced on the subject's last message, which
        its ``L3tol1-Prev`` names (a worker checks that it saw that one).

        :raises ConfigError: another publisher wrote the partition meanwhile.
        """
        subject = self.names.l3(p)
        while True:
            headers = l3_headers(
                last_seq=last_seq,
                layout=self.layout,
                prev=self.fence[p],
                end_of=self.partitions if end else None,
                row_names=names,
                marks=marks,
                encoding=encoding,
            )
            try:
                self.fence[p] = await js.publish_fenced(
                    subject, body, headers, after=self.fence[p], msg_id=f"{p}:{key}"
                )
                break
            except BatchRejected as exc:
                if exc.code not in FENCE_FAILED:
                    raise
                await self._step_over(js, p)  # the same message again, after what came
        self.messages_published += 1

    async def _step_over(self, js: JetStream, p: int) -> None:
        """The fence of partition ``p`` failed: move it past what its subject got since, when
        none of that is l3tol1's.

        :raises ConfigError: an l3tol1 message is among them: another publisher's.
        """
        stream, subject = self.names.l3_stream, self.names.l3(p)
        after, foreign = self.fence[p], 0
        while True:
            found = await retrying("a partition", partial(js.get_next, stream, subject, after + 1))
            if found is None:
                break
            if self._ours(found) is not None:
                raise ConfigError(
                    f"another publisher wrote {subject} (stream seq {found.seq}) meanwhile:"
                    f" feed {self.names.feed!r} has one publisher at a time; stop the other one"
                )
            after, foreign = found.seq, foreign + 1
        if foreign:
            self.foreign_skipped += foreign
            self.log.warning("foreign_messages_skipped", subject=subject, count=foreign,
                             fence=after, previous_fence=self.fence[p])  # fmt: skip
        else:
            # Nothing after the fence: the subject's last message went (deleted by hand), or a
            # message came just now (the next try looks again).
            last = await retrying("a partition", partial(js.get_last, stream, subject))
            after = 0 if last is None else last.seq
            if after == self.fence[p]:
                raise L3Error(f"JetStream refused the fence of {subject} at stream seq {after}")
            if after > self.fence[p]:
                return
            self.log.warning("fence_moved_back", subject=subject, fence=after,
                             previous_fence=self.fence[p])  # fmt: skip
        self.fence[p] = after
