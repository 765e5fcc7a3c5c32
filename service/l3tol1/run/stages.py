"""The stages of the data path: thin async loops around the steps, joined by bounded streams.

    source ──Chunk──▶ core ─────────────────────────────Batch──▶ write
    (read bytes)      (ParseStep, FeedStep and cuts,            (sinks, flush,
                       ApplyStep: one synchronous call each,     fsync, checkpoint)
                       per chunk)

The core stage runs parse, feed and apply on each chunk in turn, without a hop between them:
async stages are kept for what waits (reading, time, writing). A tail that waits itself
(publish: JetStream) runs as a stage of its own between the core and the writer, the core
stage then stopping after the feed.

A loop receives a chunk or batch, calls its steps with the time, sends the result on: it only
moves batches and time. A stage owns its stream ends and closes its send side when done, so the
next stage sees the end of the stream and finishes by itself: shutdown flows down the line.

A checkpoint is cut at a batch boundary without stopping the line: the feed step takes the cut
(the position, the names and its state, as of the batch) when the `CutPolicy` says it is due, the
books step adds the books after applying that batch, and the write stage makes every row up to
the cut durable before it saves the checkpoint. Each piece is taken at the same point of the
stream, so together they agree.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from l3tol1.errors import InputError
from l3tol1.run.batch import Batch
from l3tol1.run.cuts import CheckpointSaver, CutPolicy
from l3tol1.run.steps import ApplyStep, FeedStep, ParseStep
from l3tol1.settings import FINAL_FLUSH_TIMEOUT
from l3tol1.sinks.writer import Writer
from l3tol1.sources.base import Chunk, Source

__all__ = ["Health", "WriteStage", "core_stage", "read_stage"]


class Health:
    """When each stage took the batch it holds (None: waiting for one), for /healthz."""

    def __init__(
        self, clock: Callable[[], float], stages: tuple[str, ...] = ("source", "core", "write")
    ) -> None:
        self.clock = clock
        # every stage's key is there from the start: the metrics thread reads it as it changes
        self.busy: dict[str, float | None] = dict.fromkeys(stages)

    def take(self, stage: str) -> float:
        """``stage`` took a batch now; returns now."""
        self.busy[stage] = now = self.clock()
        return now

    def done(self, stage: str) -> None:
        """``stage`` is waiting for its next batch."""
        self.busy[stage] = None


def _until(deadline: float | None, now: float) -> float:
    return math.inf if deadline is None else max(0.0, deadline - now)


async def read_stage(source: Source, send: ObjectSendStream[Chunk], health: Health) -> None:
    """Send the source's chunks on until it ends (or the caller cancels the reading)."""
    async with send:
        health.take("source")
        async for chunk in source.chunks():
            await send.send(chunk)
            health.take("source")


async def core_stage(
    parse: ParseStep,
    feed: FeedStep,
    apply: ApplyStep | None,
    receive: ObjectReceiveStream[Chunk],
    send: ObjectSendStream[Batch],
    health: Health,
    clock: Callable[[], float],
    stop_reading: Callable[[], None],
) -> None:
    """Parse, order and apply (``apply``; None: the tail is a stage of its own) every chunk
    received, one synchronous call each; wake up for gap timeouts and due checkpoints.

    After a header that ends the input, stop the reading and drain the rest unparsed."""
    async with receive, send:
        while True:
            chunk = None
            health.done("core")
            try:
                with anyio.move_on_after(_until(feed.deadline(), clock())):
                    chunk = await receive.receive()
            except anyio.EndOfStream:
                last = feed.stopped()
                if last is not None:
                    await send.send(last if apply is None else apply.step(last))
                return
            if chunk is None:  # the deadline passed: a gap timed out, or a checkpoint is due
                out = feed.step(None, health.take("core"))
            elif parse.ended:
                continue
            else:
                now = health.take("core")
                batch = parse.step(chunk)
                if parse.ended:
                    stop_reading()
                out = feed.step(batch, now)
            if out is not None:
                await send.send(out if apply is None else apply.step(out))


class WriteStage:
    """Quotes and rejects to their sinks, flushed by size and age; checkpoints saved.

    ``damage`` is the error that ended the input early (`Batch.damage`), once the batch that
    carries it was written: the run fails with it after this stage has finished.
    """

    def __init__(
        self,
        writer: Writer,
        *,
        saver: CheckpointSaver | None,
        cuts: CutPolicy | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.writer = writer
        self.saver = saver
        self.cuts = cuts
        self.clock = clock
        self.damage: InputError | None = None

    async def run(self, receive: ObjectReceiveStream[Batch], health: Health) -> None:
        """Write every batch received; flush and close the sinks at the end, even when
        cancelled, within a deadline so that a stuck disk cannot hold shutdown forever."""
        writer = self.writer
        try:
            async with receive:
                while True:
                    batch = None
                    health.done("write")
                    try:
                        with anyio.move_on_after(_until(writer.deadline(), self.clock())):
                            batch = await receive.receive()
                    except anyio.EndOfStream:
                        return
                    now = health.take("write")
                    if batch is not None:
                        await self._write(batch, now)
                    elif await writer.flush_if_due(now) and self.cuts is not None:
                        self.cuts.want()
        finally:
            with anyio.move_on_after(FINAL_FLUSH_TIMEOUT, shield=True):
                try:
                    await writer.finish(self.clock())
                finally:
                    await writer.aclose()

    async def _write(self, batch: Batch, now: float) -> None:
        writer = self.writer
        if batch.layout is not None:
            writer.output.set_layout(*batch.layout)
        writer.add(batch.quotes, batch.rejects, now)
        if batch.damage is not None:
            self.damage = batch.damage
        if batch.cut is not None and self.saver is not None and self.cuts is not None:
            await self.saver.save(batch.cut, now, self.cuts)
            return
        if batch.caught_up and writer.holds_rows:
            await writer.flush(now, sync=True)  # nothing more to wait for
        if await writer.flush_if_due(now) and self.cuts is not None:
            self.cuts.want()
