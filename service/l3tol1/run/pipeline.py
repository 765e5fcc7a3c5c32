"""One run of the data path (SPEC §5, §8): the stages wired, the start, the stop.

    source ─▶ core (parse, feed, books) ─▶ write          the file job
    source ─▶ core (parse, feed) ─▶ tail ─▶ write         a tail that waits (publish)

The tail is what comes after the resequencer, given by the face that runs the pipeline: the
books for the file job (`Books`, a synchronous step run inside the core stage), JetStream for
`l3tol1 publish` (a `StageTail`, an async stage of its own); everything else is the same run.

`Pipeline.run` reads the input's header first, and only once that too is good does it cut the
outputs back (or empty them) and start the stages. A stop signal (signals.py) ends only the
reading; the later stages drain what is in flight, the writer flushes and fsyncs, a last
checkpoint is written, and the run ends, within `SHUTDOWN_TIMEOUT`. Damaged input ends the input
where it is (`Batch.damage`): everything before it is converted as at a normal end, and then the
run fails with it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Protocol

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream, TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from l3tol1.core.schemas import schema_named
from l3tol1.log import SafeStream, get_logger
from l3tol1.run.assembly import Parts
from l3tol1.run.batch import Batch
from l3tol1.run.cuts import CheckpointSaver, CutPolicy
from l3tol1.run.report import Report
from l3tol1.run.stages import Health, WriteStage, core_stage, read_stage
from l3tol1.run.steps import ApplyStep, FeedStep, ParseStep
from l3tol1.settings import SHUTDOWN_TIMEOUT, Settings
from l3tol1.signals import Stop
from l3tol1.sources.base import Chunk

__all__ = ["Books", "Pipeline", "StageTail", "Tail"]

# Batches in flight between two stages. A batch is one input chunk (512 KiB, ~5.5k rows), so this
# bounds memory while letting each stage run ahead of the next a little.
_STREAM_BUFFER = 2


class StageTail(Protocol):
    """A tail that runs as a stage of its own: ordered events in, batches for the writer out."""

    rate_counter: str  # the counter whose rate progress and summary lines give

    async def run(
        self, receive: ObjectReceiveStream[Batch], send: ObjectSendStream[Batch], health: Health
    ) -> None: ...

    def counters(self) -> dict[str, Any]:
        """Its own counters, merged over the run's."""
        ...


class Books:
    """The file job's tail: the books and the write rule (`ApplyStep`), applied in the core
    stage right after the feed (it never waits, so it needs no stage of its own)."""

    rate_counter = "events_applied"

    def __init__(self, step: ApplyStep) -> None:
        self.step = step

    def counters(self) -> dict[str, Any]:
        return {}


Tail = Books | StageTail


class Pipeline:
    """One run, from assembled parts to the end of the input or a stop signal.

    :param tail: the stage after the resequencer (``tail_of`` builds it from the parts).
    :param ready_at_start: say READY=1 to systemd (`Stop.notify`) once the input is open and
        the run has begun; False when the tail says it, once it too is ready (publish: connected).
    """

    def __init__(
        self,
        settings: Settings,
        parts: Parts,
        tail_of: Callable[[Parts], Tail],
        *,
        stop: Stop,
        stderr: SafeStream | None = None,
        clock: Callable[[], float] = time.monotonic,
        ready_at_start: bool = True,
    ) -> None:
        self.settings = settings
        self.ready_at_start = ready_at_start
        self.parts = parts
        self.stop = stop
        self.stderr = stderr
        self.clock = clock
        self.log = get_logger()
        self.started = False  # the outputs were touched and the start line logged
        self.damaged = False  # the input ended on damage
        self._stages: TaskGroup | None = None
        self._reading: anyio.CancelScope | None = None
        self.parse = ParseStep(
            str(settings.input_file),
            core=parts.core,
            instrument_column=settings.instrument_column,
            namer=parts.namer,
            ns_times=schema_named(settings.schema).rows,
        )
        self.tail = tail_of(parts)
        self.health = Health(
            clock,
            ("source", "core", "write")
            if isinstance(self.tail, Books)
            else ("source", "core", "apply", "write"),
        )
        self.report = Report(
            parts,
            self.parse,
            self.health,
            listed=settings.instruments,
            stall_timeout=settings.stall_timeout,
            clock=clock,
            extra=self.tail.counters,
            rate_counter=self.tail.rate_counter,
        )
        self.metrics: Any = None
        if settings.metrics_port is not None:
            from l3tol1.metrics import MetricsServer

            self.metrics = MetricsServer(
                self.report.counters,
                self.report.health,
                host=settings.metrics_host,
                port=settings.metrics_port,
                core=parts.core.name,
            )
            parts.writer.observe_flush = self.metrics.flush_seconds.observe

    @property
    def stopped_by(self) -> str | None:
        """What ended the run before the end of its input: a signal's name, or input_error."""
        return self.stop.signal or ("input_error" if self.damaged else None)

    async def run(self) -> None:
        """Run until the input ends (read to its end), or until a stop signal."""
        parts = self.parts
        try:
            async with anyio.create_task_group() as outer:
                outer.start_soon(self.stop.watch)

                def deadline() -> None:
                    outer.start_soon(self._enforce_shutdown_deadline)

                self.stop.on_stop(deadline)
                await self._run(outer)
                outer.cancel_scope.cancel()
        finally:
            if self.metrics is not None:
                self.metrics.close()
            await parts.source.aclose()
            if not self.started:
                # Refused before anything began (a bad header, a DBN file of another schema, a
                # stop signal): what this run created goes; what was there stays untouched.
                parts.output.discard()
                parts.rejects.discard()
            await parts.writer.aclose()
            if parts.store is not None:
                parts.store.unlock()

    async def _run(self, outer: TaskGroup) -> None:
        parts, settings = self.parts, self.settings
        with self.stop.interruptible():
            header = await parts.source.open()
            if header is not None:
                self.parse.use(header)  # a bad header fails before any output
        if self.stop.requested:
            return  # stopped before anything was touched: the checkpoint, if any, still holds
        resume = None if parts.resume is None else parts.resume.checkpoint
        await parts.output.start(None if resume is None else resume.output)
        await parts.rejects.start(None if resume is None else resume.rejects)
        if self.parse.parser is not None:
            parts.output.set_layout(*self.parse.layout())
            await parts.output.flush(sync=False)  # the header, at once
        self.started = True
        self._log_start()
        if self.ready_at_start:
            self.stop.notify.ready(f"reading {settings.input_file}")
        if self.metrics is not None:
            self.metrics.start()
            self.log.info("metrics_listening", host=settings.metrics_host, port=self.metrics.port)
        if settings.interactive and not parts.follow:
            outer.start_soon(self.report.progress_bar, self.stderr)
        elif settings.progress_interval > 0:
            outer.start_soon(self.report.progress_lines, settings.progress_interval)

        cuts = saver = None
        if parts.store is not None:
            cuts = CutPolicy(self._checkpoint_interval(), self.clock())
            saver = CheckpointSaver(parts.store, parts.options, parts.writer, self.clock)
        feed = FeedStep(
            parts.feed, parts.source.position, parts.namer.snapshot(), core=parts.core, cuts=cuts
        )
        write = WriteStage(parts.writer, saver=saver, cuts=cuts, clock=self.clock)
        health, tail = self.health, self.tail
        async with anyio.create_task_group() as stages:
            self._stages = stages
            chunks_out, chunks_in = anyio.create_memory_object_stream[Chunk](_STREAM_BUFFER)
            done_out, done_in = anyio.create_memory_object_stream[Batch](_STREAM_BUFFER)
            stages.start_soon(self._read, chunks_out)
            if isinstance(tail, Books):
                stages.start_soon(core_stage, self.parse, feed, tail.step, chunks_in, done_out,
                                  health, self.clock, self._stop_reading)  # fmt: skip
            else:
                ordered_out, ordered_in = anyio.create_memory_object_stream[Batch](_STREAM_BUFFER)
                stages.start_soon(core_stage, self.parse, feed, None, chunks_in, ordered_out,
                                  health, self.clock, self._stop_reading)  # fmt: skip
                stages.start_soon(tail.run, ordered_in, done_out, health)
            stages.start_soon(write.run, done_in, health)
        if write.damage is not None:
            # The input ended early: what came before the damage is written, synced and
            # checkpointed (issue 17); the run still fails, naming the damage.
            self.damaged = True
            raise write.damage

    def _log_start(self) -> None:
        fields = self.settings.as_log_fields()
        fields["core"] = self.parts.core.name  # which one runs: compiled or python
        self.log.info("start", **fields, follow_input=self.parts.follow)
        for event, note in self.parts.notes:
            self.log.warning(event, **note)

    def _checkpoint_interval(self) -> float:
        """Seconds between checkpoints while data flows. A Parquet part is durable only whole:
        its parts close at checkpoints, every --part-interval when following, else when full."""
        if not self.parts.output.cut_aligned:
            return self.settings.checkpoint_interval
        return self.settings.part_interval if self.parts.follow else math.inf

    async def _read(self, send: MemoryObjectSendStream[Chunk]) -> None:
        with self.stop.interruptible() as reading:
            self._reading = reading
            await read_stage(self.parts.source, send, self.health)
        send.close()  # stopped by a signal: the stages after drain what is in flight

    def _stop_reading(self) -> None:
        """End the reading: the input ended early (a header that cannot be used)."""
        if self._reading is not None:
            self._reading.cancel()

    async def _enforce_shutdown_deadline(self) -> None:
        await anyio.sleep(SHUTDOWN_TIMEOUT)
        self.log.warning("shutdown_deadline_passed", seconds=SHUTDOWN_TIMEOUT)
        if self._stages is not None:
            self._stages.cancel_scope.cancel()

    def log_summary(self) -> None:
        """The closing log line: every counter, elapsed time and rate (once started)."""
        if self.started:
            self.report.summary(self.stopped_by, self.stderr, self.settings.interactive)


def file_job(
    settings: Settings,
    *,
    stop: Stop,
    stderr: SafeStream | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Pipeline:
    """The file job (SPEC §1-12): the input's L1 rows into the output.

    :raises ConfigError: the run is impossible (`assemble`).
    """
    from l3tol1.run.assembly import assemble

    def books(parts: Parts) -> Books:
        step = ApplyStep(
            parts.instruments, parts.namer, core=parts.core, listed=settings.instruments
        )
        return Books(step)

    return Pipeline(
        settings, assemble(settings, clock=clock), books, stop=stop, stderr=stderr, clock=clock
    )
