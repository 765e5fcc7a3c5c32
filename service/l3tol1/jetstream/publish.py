"""`l3tol1 publish` (SPEC §13): the file job's front half, publishing ordered events.

The input is read, parsed, rejected and resequenced exactly as by the file job (`Pipeline`);
where the file job applies events to the books, the publisher sends them to the partition of
their instrument, in seq order, a batch of consecutive events per message.

Exactly once, from the stream itself: at start the publisher reads the last message of every
partition (its ``L3tol1-Last-Seq`` header: the last event it holds) and skips every event at
or below it, so a publisher that restarts anywhere, even from the start of its input, publishes
nothing twice. Each message is published with ``Nats-Expected-Last-Subject-Sequence`` (a second
publisher of the same feed is refused, never interleaved) and a ``Nats-Msg-Id`` (a retry after
a lost acknowledgement is stored once).
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from anyio.abc import ObjectReceiveStream, ObjectSendStream
from anyio.streams.memory import MemoryObjectReceiveStream

from l3tol1.core.mbo import MboNamer
from l3tol1.core.wire import EVENTS_MAGIC, NS_PER_DAY, partition_of
from l3tol1.errors import ConfigError, L3Error
from l3tol1.jetstream.client import FENCE_FAILED, BatchRejected, JetStream, connect, retrying
from l3tol1.jetstream.wire import (
    END,
    LAST_SEQ,
    LAYOUT,
    MAX_BODY,
    PREV,
    ROW_NAMES,
    Names,
    encode_layout,
)
from l3tol1.pipeline import Pipeline
from l3tol1.settings import Settings
from l3tol1.stages import Batch, Health

__all__ = ["PublishPipeline"]


class PublishPipeline(Pipeline):
    """The file job up to the resequencer, then JetStream."""

    writes_rows = False

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        # No L1 file: the rows are the workers'. Rejects stay local: --reject-file, else
        # publish-<feed>.rejects.jsonl in the working directory.
        reject = settings.reject_file or Path(f"publish-{settings.feed}.rejects.jsonl")
        settings = replace(settings, output_file=Path(os.devnull), reject_file=reject)
        super().__init__(settings, **kwargs)
        if settings.instruments is not None:
            raise ConfigError(
                "--instruments is not supported by publish: every instrument is published"
                " (leave it out, and select the instruments from the collected rows)"
            )
        self.publish = PublishStage(settings, self.core, self.instruments.snapshot(), self.namer)
        self.publish.follow = self.follow

    def _apply_stage(self) -> PublishStage:
        return self.publish

    def counters(self) -> dict[str, Any]:
        counters = super().counters()
        counters["events_published"] = self.publish.events_published
        counters["messages_published"] = self.publish.messages_published
        counters["events_already_published"] = self.publish.events_already_published
        return counters


FLUSH_BODY = 256 * 1024  # a partition's message is sent once this full (or when nothing waits)


@dataclass(slots=True)
class Pending:
    """A partition's next message: packed events not sent yet."""

    first: int  # where its first event is (seq, or Databento's record index)
    last: int = -1
    count: int = 0
    size: int = len(EVENTS_MAGIC)
    records: list[memoryview] = field(default_factory=list)
    names: dict[tuple[str, int], str] = field(default_factory=dict)

    def add(self, body: bytes, last: int, count: int, names: dict[Any, str] | None) -> None:
        self.records.append(memoryview(body)[len(EVENTS_MAGIC) :])
        self.size += len(body) - len(EVENTS_MAGIC)
        self.last = last
        self.count += count
        if names:
            self.names.update(names)

    def body(self) -> bytes:
        return EVENTS_MAGIC + b"".join(self.records)


class PublishStage:
    """Ordered events to their partitions' subjects; rejects passed on to the writer."""

    def __init__(self, settings: Settings, core: Any, no_books: Any, namer: MboNamer) -> None:
        self.settings = settings
        self.core = core  # packs the events, in C when compiled
        self.no_books = no_books  # the checkpoint's books: the publisher keeps none
        self.namer = namer  # the names of Databento's rows, by book key and day
        self.follow = False  # the input is followed (tail -F)
        self.names = Names(settings.subject_prefix, settings.feed)
        self.partitions = settings.partitions
        self.js: JetStream | None = None
        self.fence = [0] * self.partitions  # the stream seq of each subject's last message
        # The last event each partition holds: its seq (Databento: its record index).
        self.last_seq = [-1] * self.partitions
        self.ended = [False] * self.partitions
        self.pending: dict[int, Pending] = {}  # each partition's next message
        self.sealed: dict[int, list[Pending]] = {}  # full ones, not sent yet
        self.layout = "0,0"
        self.events_published = 0
        self.messages_published = 0
        self.events_already_published = 0

    async def start(self) -> JetStream:
        """Connect, create the stream (or check its partition count), learn what it holds."""
        nc = await connect(self.settings.nats_url, f"l3tol1-publish-{self.names.feed}")
        js = JetStream(nc, self.names)
        await retrying("the L3 stream", partial(js.ensure_l3_stream, self.partitions))
        for p in range(self.partitions):
            subject = self.names.l3(p)
            last = await retrying("a partition", partial(js.get_last, js.names.l3_stream, subject))
            if last is not None:
                self.fence[p] = last.seq
                self.last_seq[p] = int(last.headers.get(LAST_SEQ, "-1"))
                self.ended[p] = END in last.headers
        self.js = js
        return js

    async def run(
        self, receive: ObjectReceiveStream[Batch], send: ObjectSendStream[Batch], health: Health
    ) -> None:
        js = await self.start()
        try:
            async with receive, send:
                async for batch in receive:
                    health.take("apply")
                    if batch.layout is not None:
                        await self._flush(js, everything=True)  # sent with the old layout
                        self.layout = encode_layout(batch.layout)
                    if batch.ordered and self.follow:
                        raise ConfigError(
                            "publish cannot follow Databento MBO input: its records are placed"
                            " by their index in the file, which a rotation starts again; use"
                            " --no-follow"
                        )
                    if batch.events:
                        self._add(batch.events, batch.ordered)
                    # Small messages wait for more while more batches are queued behind this
                    # one (the publisher is behind); all go before a checkpoint, at the end,
                    # and whenever nothing is queued (latency when following).
                    queued = isinstance(receive, MemoryObjectReceiveStream) and (
                        receive.statistics().current_buffer_used > 0
                    )
                    everything = batch.end_of_input or batch.cut is not None or not queued
                    await self._flush(js, everything=everything)
                    if batch.end_of_input:
                        await self._end(js)
                    if batch.cut is not None:  # its events are in the stream now: a checkpoint
                        batch.cut.instruments = self.no_books
                    batch.events = []
                    await send.send(batch)  # the rejects, for the writer
                    health.done("apply")
                await self._flush(js, everything=True)  # stopped: what was read goes out
        finally:
            await js.nc.close()

    def _add(self, events: Any, databento: bool) -> None:
        """Pack events into their partitions' next messages.

        Databento's records (``databento``) are placed by their index in the input, not by
        their (venue) sequence numbers, and their messages say the names of their books' rows
        (a book is keyed by publisher and instrument id; its rows take the symbol of their day).
        """
        packed, skipped = self.core.pack_events(
            events, self.partitions, self.last_seq, MAX_BODY, by_line=databento
        )
        self.events_already_published += skipped
        names: dict[int, dict[tuple[str, int], str]] = {}
        if databento:
            for key, day in self.core.instrument_days(events):
                name = self.namer.name(key, day * NS_PER_DAY)
                names.setdefault(partition_of(key, self.partitions), {})[(key, day)] = name
        for p, body, first, last, count in packed:
            part = self.pending.get(p)
            if part is not None and part.size + len(body) - len(EVENTS_MAGIC) > MAX_BODY:
                self.sealed.setdefault(p, []).append(part)
                part = None
            if part is None:
                part = self.pending[p] = Pending(first)
            part.add(body, last, count, names.get(p))

    async def _flush(self, js: JetStream, *, everything: bool) -> None:
        """Send the messages that are full (or all of them)."""
        out, self.sealed = self.sealed, {}
        for p, part in list(self.pending.items()):
            if everything or part.size >= FLUSH_BODY:
                out.setdefault(p, []).append(part)
                del self.pending[p]
        # A partition's messages one after the other (each is fenced on the one before);
        # the partitions at once, so that a flush costs one round trip to the server, not P.
        await asyncio.gather(*(self._send_partition(js, p, parts) for p, parts in out.items()))

    async def _send_partition(self, js: JetStream, p: int, parts: list[Pending]) -> None:
        for part in parts:
            headers = {LAST_SEQ: str(part.last), LAYOUT: self.layout}
            if part.names:
                rows = [(key, day, name) for (key, day), name in sorted(part.names.items())]
                headers[ROW_NAMES] = json.dumps(rows, separators=(",", ":"))
            await self._send(js, p, part.body(), headers, str(part.first))
            self.last_seq[p] = part.last
            self.events_published += part.count

    async def _end(self, js: JetStream) -> None:
        for p in range(self.partitions):
            if not self.ended[p]:
                headers = {END: str(self.partitions), LAST_SEQ: str(self.last_seq[p])}
                await self._send(js, p, b"", {**headers, LAYOUT: self.layout}, "end")
                self.ended[p] = True

    async def _send(
        self, js: JetStream, p: int, body: bytes, headers: dict[str, str], key: str
    ) -> None:
        subject = self.names.l3(p)
        headers[PREV] = str(self.fence[p])  # a worker checks that it saw that one
        try:
            self.fence[p] = await js.publish_fenced(
                subject, body, headers, after=self.fence[p], msg_id=f"{p}:{key}"
            )
        except BatchRejected as exc:
            if exc.code in FENCE_FAILED:
                raise L3Error(
                    f"another publisher wrote {subject} meanwhile: feed {self.names.feed!r}"
                    " has one publisher at a time"
                ) from exc
            raise
        self.messages_published += 1
