"""`l3tol1 collect` (SPEC §13): the L1 rows of every partition into the file job's output.

The collector reads the feed's L1 subjects in stream order (rows become visible only when the
worker's atomic batch that carries them commits, so it never sees a row twice or a row without
its state) and writes them with the file job's writer: CSV (SPEC §2) or Parquet (§11), flushed
by size and age. With ``--no-follow`` it stops, exit 0, once every partition's end mark has come.

A message is checked whole (`wire.read_l1`: headers and rows) before it is acted on; one that is
not a worker's (a subject that names no partition of the feed, an end mark that is not the
worker's, a body that is not rows) is quarantined: logged, counted, never written, and it ends
no partition.

The rows are the feed's schema's (SPEC §14, fixed by its publisher): ``--schema`` defaults to
it, and one given that differs is refused (exit 2), as is a checkpoint of another schema. Rows
are written in the order their partitions' commits reach the stream: per instrument that is the
file job's order; across instruments of different partitions it is not (one partition: the file
job's file, byte for byte).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from l3tol1.checkpoint.codec import damaged
from l3tol1.core.plain import PlainDataError, PlainReader
from l3tol1.core.schemas import SCHEMAS, Schema
from l3tol1.core.wire import unpack_rows
from l3tol1.errors import CheckpointError, ConfigError
from l3tol1.jetstream.client import (
    JetStream,
)
from l3tol1.jetstream.connection import close, connect, retrying
from l3tol1.jetstream.wire import Malformed, Names, decode_layout, partition_of_subject, read_l1
from l3tol1.log import get_logger
from l3tol1.metrics import serve_role_metrics
from l3tol1.run.assembly import build_output, load_core, use_schema
from l3tol1.settings import Settings
from l3tol1.signals import Stop
from l3tol1.sinks.base import OutputState, Sink, output_state_from_plain
from l3tol1.sinks.files import replace_file, take_lock
from l3tol1.sinks.rejects import RejectSink
from l3tol1.sinks.writer import Writer

__all__ = ["Collector"]

FETCH_BATCH = 32  # messages of at most 512 KiB: 16 MiB at once, well under a client's 64 MiB


class Collector:
    """One `l3tol1 collect` process."""

    def __init__(self, settings: Settings, *, stop: Stop) -> None:
        self.settings = settings
        self.names = Names(settings.subject_prefix, settings.feed)
        self.follow = settings.follow is not False
        self.log = get_logger()
        self.core = load_core(settings.core)  # unpacks and formats the rows, in C when compiled
        self.output: Sink = build_output(settings, self.core, follow=self.follow)
        self.output.open()
        self.store = None if settings.checkpoint is None else CollectCheckpoint(settings.checkpoint)
        self.resume: tuple[int, Any] | None = None
        if self.store is not None:
            self.resume = self.store.load()
            if self.resume is not None:
                self.output.check_resume(self.resume[1], self.store.path)
        self.written_seq = 0 if self.resume is None else self.resume[0]
        self.schema: Schema = SCHEMAS[settings.schema]  # the feed's, once connected
        rejects = RejectSink(Path(os.devnull))  # the publisher keeps the rejects
        rejects.open()
        self.writer = Writer(
            self.output,
            rejects,
            batch_size=settings.batch_size,
            max_flush_interval=settings.max_flush_interval,
            checkpointing=self.store is not None,
        )
        self.stop = stop
        self.rows = 0
        self.quarantined = 0
        self.delivery_gaps = 0
        self.ended: set[str] = set()
        self.seen_seq = self.written_seq  # stream seq of the last message taken
        self.output_started = False

    async def run(self) -> None:
        """Collect until the feed ends (``--no-follow``) or a stop signal (which is heeded from
        the first instant, connected or not); what was taken is written either way."""
        metrics = serve_role_metrics(self.settings, "collect", self.summary)
        nc = None
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.stop.watch)
                try:
                    with self.stop.interruptible():
                        nc = await connect(
                            self.settings.nats_url, f"l3tol1-collect-{self.names.feed}"
                        )
                    if not self.stop.requested:
                        await self._collect(JetStream(nc, self.names))
                finally:
                    with anyio.CancelScope(shield=True):
                        if self.store is not None and self.output_started:
                            await self._flush(time.monotonic())
                        await self.writer.finish(time.monotonic())
                        await self.writer.aclose()
                tg.cancel_scope.cancel()
        finally:
            if metrics is not None:
                metrics.close()
            if nc is not None:
                await close(nc)

    async def _collect(self, js: JetStream) -> None:
        from nats.errors import Error as NatsError
        from nats.errors import TimeoutError as NatsTimeout
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        with self.stop.interruptible():
            info = await js.wait_for_feed(lambda: self.stop.requested)
            await retrying("the L1 stream", js.ensure_l1_stream)
        if self.stop.requested:
            return
        partitions = info.partitions
        self._use_schema(info.schema)
        await self.output.start(None if self.resume is None else self.resume[1])
        self.output_started = True
        self.stop.notify.ready(f"collecting feed {self.names.feed}")
        self.log.info(
            "start",
            role="collect",
            feed=self.names.feed,
            partitions=partitions,
            output_file=str(self.settings.output_file),
            resumes_after=self.written_seq,  # the L1 stream sequence already written
        )

        def subscribe(after: int) -> Any:
            # An ephemeral consumer lives on one server: when that server is lost, a new one
            # is made, on a live server, from the message after the last one taken.
            return js.js.pull_subscribe(
                self.names.l1("*"),
                stream=self.names.l1_stream,
                config=ConsumerConfig(
                    deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                    opt_start_seq=after + 1,
                    ack_policy=AckPolicy.NONE,
                    inactive_threshold=60.0,
                ),
            )

        subscription = None
        with self.stop.interruptible():
            subscription = await retrying("the L1 consumer", partial(subscribe, self.written_seq))
        delivered = 0  # the consumer sequence of the last message taken from `subscription`

        async def resubscribe(old: Any) -> Any:
            with contextlib.suppress(Exception):
                await old.unsubscribe()
            await anyio.sleep(0.2)
            return await retrying("the L1 consumer", partial(subscribe, self.seen_seq))

        if self.resume is not None:
            self.ended = set(self.store.ended if self.store is not None else ())
        layout_set = self.resume is not None and self.resume[1].instrument is not None
        writer = self.writer
        unpack: Any = self.core.unpack_quotes
        if self.schema.rows:
            unpack = partial(unpack_rows, depth=self.schema.depth)
        while not self.stop.requested and subscription is not None:
            if not self.follow and len(self.ended) >= partitions:
                return
            msgs = []
            # A stop ends a wait for the server at once (what was taken is written after).
            with self.stop.interruptible():
                try:
                    msgs = await subscription.fetch(FETCH_BATCH, timeout=0.2)
                except (NatsTimeout, TimeoutError):  # nothing new (nats-py raises either)
                    pass
                except NatsError as exc:  # its server is gone: a new consumer, elsewhere
                    self.log.warning("fetch_failed", error=repr(exc)[:200])
                    delivered, old, subscription = 0, subscription, None
                    subscription = await resubscribe(old)
            now = time.monotonic()
            for msg in msgs:
                if msg.metadata.sequence.consumer != delivered + 1:
                    # A message never came (the server drops messages to a client that falls
                    # too far behind): again from the one after the last taken.
                    self.log.warning("delivery_gap", after_stream_seq=self.seen_seq)
                    self.delivery_gaps += 1
                    delivered, old, subscription = 0, subscription, None
                    with self.stop.interruptible():
                        subscription = await resubscribe(old)
                    break
                delivered += 1
                self.seen_seq = msg.metadata.sequence.stream
                try:
                    p = partition_of_subject(msg.subject, self.names.l1, partitions)
                    if p is None:
                        raise Malformed(f"{msg.subject} is not a subject of a partition")
                    message = read_l1(msg.headers, msg.data, unpack=unpack)
                except Malformed as exc:  # not a worker's: counted and skipped, never written
                    self.quarantined += 1
                    self.log.error("message_quarantined", subject=msg.subject,
                                   stream_seq=self.seen_seq, reason=str(exc)[:200])  # fmt: skip
                    continue
                if not layout_set:
                    self.output.set_layout(*decode_layout(message.layout))
                    layout_set = True
                if message.end:
                    self.ended.add(str(p))
                    continue
                if message.quotes is None:  # a worker saved its books and made no rows
                    continue
                writer.add(message.quotes, [], now)
                self.rows += len(message.quotes)
            if self.store is None:
                if not msgs and writer.holds_rows:
                    await writer.flush(now, sync=True)  # caught up: nothing more to batch with
                await writer.flush_if_due(now)
                continue
            if self.settings.parquet:  # a part is durable only whole: save when one closes
                if await writer.flush_if_due(now):
                    await self._flush(now)
                continue
            deadline = writer.deadline()
            if (
                (not msgs and self.seen_seq != self.written_seq)  # caught up
                or (deadline is not None and now >= deadline)
                or self.output.buffered >= self.settings.batch_size
            ):
                await self._flush(now)

    def _use_schema(self, schema: str) -> None:
        """Write the feed's schema: refuse a --schema or a checkpoint of another one.

        :raises ConfigError: --schema names another schema.
        :raises CheckpointError: the checkpoint was written for another schema.
        """
        feed = self.names.feed
        if self.settings.schema_given and self.settings.schema != schema:
            raise ConfigError(
                f"feed {feed!r} has schema {schema}, not --schema {self.settings.schema}: leave"
                " --schema out (collect writes its feed's), or use another --feed"
            )
        if self.store is not None and self.resume is not None and self.store.schema != schema:
            raise CheckpointError(
                f"checkpoint {self.store.path} was written for schema {self.store.schema}, but"
                f" feed {feed!r} has schema {schema}: remove the checkpoint (and the output) to"
                " start over"
            )
        if schema != self.schema.name:
            self.schema = SCHEMAS[schema]
            use_schema(self.output, self.schema, self.core)
        if self.store is not None:
            self.store.schema = schema

    async def _flush(self, now: float) -> None:
        """Rows durable, then the stream sequence they reach recorded (``--checkpoint``);
        Parquet parts are closed here, so that the checkpoint names only complete parts."""
        assert self.store is not None
        await self.writer.flush(now, sync=True)
        await self.output.close_parts(all_rows=True)
        self.store.save(self.seen_seq, self.output.state(), self.ended)
        await self.output.commit()
        self.written_seq = self.seen_seq

    def summary(self) -> dict[str, Any]:
        return {
            "rows_written": self.rows,
            "partitions_ended": len(self.ended),
            "quarantined": self.quarantined,
            "delivery_gaps": self.delivery_gaps,
        }


class CollectCheckpoint:
    """`collect --checkpoint`: the L1 stream sequence written so far, the output's state and
    the schema of its rows (none recorded: ``l1``, a checkpoint from before schemas), saved
    after the rows are fsynced (temp file, fsync, rename), locked for one collector."""

    VERSION = 1

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ended: list[str] = []
        self.schema = "l1"
        try:
            self._lock = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot use --checkpoint {path}: {exc.strerror}") from exc
        take_lock(self._lock, path, "checkpoint")

    def load(self) -> tuple[int, Any] | None:
        """(stream seq, output state) of the last save, or None before the first.

        :raises CheckpointError: it is unreadable, not a collector's, or damaged.
        """

        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {self.path} is damaged: {exc}") from exc
        if not isinstance(data, dict) or data.get("version") != self.VERSION:
            raise CheckpointError(f"checkpoint {self.path} is not a collect checkpoint")
        seq, ended = data.get("stream_seq"), data.get("ended")
        if type(seq) is not int or seq < 0 or not isinstance(ended, list):
            raise CheckpointError(f"checkpoint {self.path} is damaged (stream_seq, ended)")
        self.ended = [str(p) for p in ended]
        schema = data.get("schema", "l1")
        if schema not in SCHEMAS:
            raise CheckpointError(f"checkpoint {self.path} is damaged (schema)")
        self.schema = schema
        try:
            output = output_state_from_plain(data.get("output"), "output", PlainReader())
        except PlainDataError as exc:
            raise damaged(self.path, exc) from exc
        return seq, output

    def save(self, seq: int, output: OutputState, ended: set[str]) -> None:
        """Replace the checkpoint atomically and durably (`replace_file`)."""
        state = {
            "version": self.VERSION,
            "stream_seq": seq,
            "output": output.to_plain(),
            "ended": sorted(ended),
            "schema": self.schema,
        }
        replace_file(self.path, json.dumps(state).encode())
