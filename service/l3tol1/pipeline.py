"""Wire the stages together and own signals and shutdown (SPEC §5, §8).

A run is built and checked before anything is touched: the paths (compared by file identity),
the input's kind, the checkpoint (validated whole, matched against the options, input and
outputs), the outputs (opened and locked, not yet changed). `Pipeline.run` then reads the input's
header, and only once that too is good does it cut the outputs back (or empty them) and start the
stages (see stages.py). SIGTERM, SIGINT and SIGHUP cancel only the reading; the later stages
drain what is in flight, the writer flushes and fsyncs, a last checkpoint is written, and the run
ends. A second signal exits at once. Damaged input ends the input where it is (stages.py, `Batch.
damage`): everything before it is converted as at a normal end, and then the run fails.
"""

from __future__ import annotations

import math
import os
import signal
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from l3tol1.checkpoint import Checkpoint, CheckpointStore, RunOptions, find_input
from l3tol1.core import load
from l3tol1.core.mbo import MboNamer
from l3tol1.errors import CheckpointError, ConfigError, InputError
from l3tol1.log import SafeStream, get_logger
from l3tol1.options import format_instruments
from l3tol1.settings import SHUTDOWN_TIMEOUT, Settings
from l3tol1.sinks.base import Sink
from l3tol1.sinks.csv import CsvSink
from l3tol1.sinks.parquet import ParquetSink
from l3tol1.sinks.rejects import RejectSink
from l3tol1.sinks.writer import Writer
from l3tol1.sources.base import Chunk, Source
from l3tol1.sources.codecs import MAGIC_BYTES, codec_of
from l3tol1.sources.dbn import DBN_MAGIC
from l3tol1.sources.file import FileSource
from l3tol1.sources.stream import STDIN, StreamSource, is_stream
from l3tol1.stages import (
    ApplyStage,
    Batch,
    Checkpointer,
    FeedStage,
    Health,
    ParseStage,
    WriteStage,
    instruments_not_seen,
    read_stage,
)

if TYPE_CHECKING:
    from l3tol1.cli import StopSignals
    from l3tol1.metrics import MetricsServer

__all__ = ["Pipeline"]

# Batches in flight between two stages. A batch is one input chunk (256 KiB, ~2.7k rows), so this
# bounds memory while letting each stage run ahead of the next a little.
_STREAM_BUFFER = 2
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Pipeline:
    """One run of l3tol1: built (and checked) synchronously, then `run` in an event loop.

    :raises ConfigError: from the constructor, for anything that makes the run impossible:
        colliding paths, a missing input (no-follow), an option that does not fit the input,
        a damaged or foreign checkpoint, an output that cannot be opened or is locked.
    """

    writes_rows = True  # `l3tol1 publish` writes no L1 rows (its stage after the feed is NATS)
    rate_counter = "events_applied"  # the counter whose rate progress and summary lines give

    def __init__(
        self,
        settings: Settings,
        *,
        stops: StopSignals | None = None,
        stderr: SafeStream | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.stops = stops
        self.stderr = stderr
        self.log = get_logger()
        self.started = False  # the outputs were touched and the start line logged
        self.stopped_by: str | None = None
        self._reading: anyio.CancelScope | None = None
        self._stages: TaskGroup | None = None
        self._parse: ParseStage | None = None
        self._notes: list[tuple[str, dict[str, Any]]] = [
            ("environment_variable_ignored", {"detail": text}) for text in settings.warnings
        ]
        try:
            self.core = load(settings.core)
        except ImportError as exc:
            raise ConfigError(
                "--core compiled: the compiled core was not built (no C compiler at install?);"
                " use --core python or auto"
            ) from exc
        _check_paths(settings)
        kind = _input_kind(settings.input_file, settings.follow, settings.input_format)
        follow = kind == "file" and settings.follow is not False
        if settings.follow and not follow:
            raise ConfigError(
                f"--follow cannot follow {_describe(settings.input_file, kind)}: it is read to"
                " its end; leave --follow out"
            )
        self.follow = follow
        self.options = RunOptions(
            start_seq=settings.start_seq,
            max_pending=settings.max_pending,
            gap_timeout=settings.gap_timeout if follow else None,
            instrument_column=settings.instrument_column,
            instruments=settings.instruments,
            output_format="parquet" if settings.parquet else "csv",
        )
        self.output: Sink
        if settings.parquet:
            self.output = ParquetSink(
                settings.output_file,
                part_rows=settings.part_rows,
                part_interval=settings.part_interval if follow else None,
                clock=clock,
            )
        else:
            self.output = CsvSink(settings.output_file, formatter=self.core.formatter)
        self.rejects = RejectSink(settings.reject_path)
        self.store: CheckpointStore | None = None
        resume: Checkpoint | None = None
        resume_at: tuple[Path, int, int] | None = None
        if settings.checkpoint is not None:
            _check_checkpointable(settings, kind, rows=self.writes_rows)
            self.store = CheckpointStore(settings.checkpoint)
            self.store.lock()
            resume, removed_temp = self.store.load()
            if removed_temp:
                self._notes.append(("checkpoint_temp_removed", {"path": str(settings.checkpoint)}))
            if resume is not None:
                resume_at = self._match(resume, settings.checkpoint)
        self.resumed = resume is not None
        self._resume = resume

        self.source: Source
        if kind == "file":
            self.source = FileSource(
                settings.input_file,
                follow=follow,
                poll_interval=settings.poll_interval,
                resume=resume_at,
                input_format=settings.input_format,
            )
        else:
            self.source = StreamSource(
                settings.input_file,
                resume=None if resume_at is None else resume_at[1:],
                input_format=settings.input_format,
            )
        self.feed = self.core.feed(
            start_seq=settings.start_seq,
            max_pending=settings.max_pending,
            gap_timeout=settings.gap_timeout if follow else None,
        )
        # Databento's books are kept by (publisher, instrument_id) keys; the namer turns
        # --instruments into the keys it keeps, as it meets them.
        self.namer = MboNamer(
            None if settings.instruments is None else frozenset(settings.instruments)
        )
        self.instruments = self.core.instruments(settings.instruments, kept=self.namer.kept)
        if resume is not None:
            self.feed.restore(resume.feed, clock())
            self.instruments.restore(resume.instruments)
            self.namer.restore(resume.names)
        self.metrics: MetricsServer | None = None
        if settings.metrics_port is not None:
            from l3tol1.metrics import MetricsServer

            self.metrics = MetricsServer(
                self.counters, self.health, host=settings.metrics_host, port=settings.metrics_port
            )
        # Opened and locked now, changed only in `run`, once the input's header is known good.
        self.output.open()
        try:
            self.rejects.open()
        except ConfigError:
            self.output.discard()
            raise
        self.writer = Writer(
            self.output,
            self.rejects,
            batch_size=settings.batch_size,
            max_flush_interval=settings.max_flush_interval,
            checkpointing=self.store is not None,
            observe_flush=None if self.metrics is None else self.metrics.flush_seconds.observe,
        )
        self._health = Health(clock)
        self._started_at = clock()

    def _match(self, resume: Checkpoint, checkpoint: Path) -> tuple[Path, int, int] | None:
        """Check that a checkpoint belongs to this run; where to resume reading.

        :raises CheckpointError: in one sentence, naming what differs.
        """
        changed = resume.options.differences(self.options)
        if changed:
            recorded = _option_values(resume.options, changed)
            now = _option_values(self.options, changed)
            raise CheckpointError(
                f"checkpoint {checkpoint} was written with {recorded}, but this run has {now}:"
                " restart with the same options, or remove the checkpoint to start over"
            )
        resume_at = find_input(resume.input, self.settings.input_file, checkpoint)
        self.output.check_resume(resume.output, checkpoint)
        self.rejects.check_resume(resume.rejects, checkpoint)
        return resume_at

    # -- the run -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until the input ends (read to its end), or until a stop signal."""
        try:
            async with anyio.create_task_group() as outer:
                outer.start_soon(self._watch_signals, outer)
                await self._run(outer)
                outer.cancel_scope.cancel()
        finally:
            if self.metrics is not None:
                self.metrics.close()
            await self.source.aclose()
            if not self.started:
                # Refused before anything began (a bad header, a DBN file of another schema, a
                # stop signal): what this run created goes; what was there stays untouched.
                self.output.discard()
                self.rejects.discard()
            await self.writer.aclose()
            if self.store is not None:
                self.store.unlock()

    async def _run(self, outer: TaskGroup) -> None:
        self._parse = parse = ParseStage(
            str(self.settings.input_file),
            core=self.core,
            instrument_column=self.settings.instrument_column,
            namer=self.namer,
            stop_reading=self._stop_reading,
        )
        with self._reading_scope():
            header = await self.source.open()
            if header is not None:
                parse.use(header)  # a bad header fails before any output
        if self.stopped_by is not None:
            return  # stopped before anything was touched: the checkpoint, if any, still holds
        await self.output.start(None if self._resume is None else self._resume.output)
        await self.rejects.start(None if self._resume is None else self._resume.rejects)
        if parse.parser is not None:
            self.output.set_layout(*parse.layout())
            await self.output.flush(sync=False)  # the header, at once
        self.started = True
        fields = self.settings.as_log_fields()
        fields["core"] = self.core.name  # which one runs: compiled or python
        self.log.info("start", **fields, follow_input=self.follow)
        for event, fields in self._notes:
            self.log.warning(event, **fields)
        if self.metrics is not None:
            self.metrics.start()
            self.log.info(
                "metrics_listening", host=self.settings.metrics_host, port=self.metrics.port
            )
        if self.settings.interactive and not self.follow:
            outer.start_soon(self._show_progress_bar)
        elif self.settings.progress_interval > 0:
            outer.start_soon(self._report_progress)

        checkpointer = None
        if self.store is not None:
            checkpointer = Checkpointer(
                self.store,
                self.options,
                self.writer,
                interval=self._checkpoint_interval(),
                clock=self.clock,
            )
        feed_stage = FeedStage(
            self.feed,
            self.source.position,
            names=self.namer.snapshot(),
            core=self.core,
            checkpointer=checkpointer,
            clock=self.clock,
        )
        write_stage = WriteStage(self.writer, checkpointer=checkpointer, clock=self.clock)
        health = self._health
        async with anyio.create_task_group() as stages:
            self._stages = stages
            chunks_out, chunks_in = anyio.create_memory_object_stream[Chunk](_STREAM_BUFFER)
            parsed_out, parsed_in = anyio.create_memory_object_stream[Batch](_STREAM_BUFFER)
            ordered_out, ordered_in = anyio.create_memory_object_stream[Batch](_STREAM_BUFFER)
            quotes_out, quotes_in = anyio.create_memory_object_stream[Batch](_STREAM_BUFFER)
            stages.start_soon(self._read, chunks_out)
            stages.start_soon(parse.run, chunks_in, parsed_out, health)
            stages.start_soon(feed_stage.run, parsed_in, ordered_out, health)
            stages.start_soon(self._apply_stage().run, ordered_in, quotes_out, health)
            stages.start_soon(write_stage.run, quotes_in, health)
        if write_stage.damage is not None:
            # The input ended early: what came before the damage is written, synced and
            # checkpointed (issue 17); the run still fails, naming the damage.
            self.stopped_by = self.stopped_by or "input_error"
            raise write_stage.damage

    def _apply_stage(self) -> Any:
        """The stage between the feed and the writer: the books (`l3tol1 publish` puts
        JetStream there instead, SPEC §13)."""
        return ApplyStage(
            self.instruments, self.namer, core=self.core, listed=self.settings.instruments
        )

    def _checkpoint_interval(self) -> float:
        """Seconds between checkpoints while data flows. A Parquet part is durable only whole:
        its parts close at checkpoints, every --part-interval when following, else when full."""
        if not self.output.cut_aligned:
            return self.settings.checkpoint_interval
        return self.settings.part_interval if self.follow else math.inf

    async def _read(self, send: Any) -> None:
        with self._reading_scope():
            await read_stage(self.source, send, self._health)
        send.close()  # stopped by a signal: the stages after drain what is in flight

    def _stop_reading(self) -> None:
        """End the reading: the input ended early (a header that cannot be used)."""
        if self._reading is not None:
            self._reading.cancel()

    def _reading_scope(self) -> anyio.CancelScope:
        """A scope around reading that a stop signal cancels (at once, if one came already)."""
        self._reading = anyio.CancelScope()
        if self.stopped_by is not None:
            self._reading.cancel()
        return self._reading

    # -- signals, progress, summary ------------------------------------------------------------

    async def _watch_signals(self, outer: TaskGroup) -> None:
        with anyio.open_signal_receiver(*_STOP_SIGNALS) as signals:
            if self.stops is not None:
                for signum in self.stops.received:  # arrived before this task listened
                    self._stop(signum, outer)
            async for signum in signals:
                self._stop(signum, outer)

    def _stop(self, signum: int, outer: TaskGroup) -> None:
        name = signal.Signals(signum).name
        if self.stopped_by is None:
            self.stopped_by = name
            self.log.info("stopping", signal=name)
            if self._reading is not None:
                self._reading.cancel()
            outer.start_soon(self._enforce_shutdown_deadline)
        else:
            # The last checkpoint stays consistent: it only ever claims synced rows.
            self.log.warning("forced_exit", signal=name)
            os._exit(128 + signum)

    async def _enforce_shutdown_deadline(self) -> None:
        await anyio.sleep(SHUTDOWN_TIMEOUT)
        self.log.warning("shutdown_deadline_passed", seconds=SHUTDOWN_TIMEOUT)
        if self._stages is not None:
            self._stages.cancel_scope.cancel()

    async def _report_progress(self) -> None:
        interval = self.settings.progress_interval
        last_time, last_done = self.clock(), self.counters()[self.rate_counter]
        while True:
            await anyio.sleep(interval)
            now = self.clock()
            counters = self.counters()
            rate = (counters[self.rate_counter] - last_done) / max(now - last_time, 1e-9)
            self.log.info("progress", **counters, events_per_s=round(rate))
            last_time, last_done = now, counters[self.rate_counter]

    async def _show_progress_bar(self) -> None:
        """A progress bar on the terminal (when reading to the end): bytes, events/s, ETA."""
        from l3tol1.ui import ProgressBar

        with ProgressBar(self.source.size, self.stderr) as bar:
            while True:
                bar.update(
                    self.source.bytes_read,
                    self.instruments.applied,
                    self.clock() - self._started_at,
                )
                await anyio.sleep(0.1)

    def health(self) -> tuple[bool, str]:
        """Healthy unless a stage has held one batch longer than --stall-timeout (stuck, or
        blocked by a stuck stage after it). Waiting for input is healthy."""
        now = self.clock()
        for stage, since in list(self._health.busy.items()):
            if since is None:
                continue
            if stage == "source":
                if self.source.idle:
                    continue
                since = max(since, self.source.last_active)
            if now - since > self.settings.stall_timeout:
                return False, f"stalled: the {stage} stage has not moved for {now - since:.0f} s"
        return True, "ok"

    def counters(self) -> dict[str, Any]:
        """Every counter of the run, as reported in the progress and summary lines."""
        feed, instruments, source = self.feed, self.instruments, self.source
        store = self.store
        return {
            "events_read": feed.received,
            "events_applied": instruments.applied,
            "rows_written": self.output.rows,
            "pending": feed.pending,
            "rejects": dict(self.rejects.by_reason),
            "anomalies": dict(instruments.anomalies),
            "gaps_skipped": feed.gaps_skipped,
            "seqs_lost": feed.seqs_lost,
            "last_seq": instruments.last_seq,
            "instruments": len(instruments),
            "events_skipped": instruments.skipped,
            "crossed_quotes": instruments.crossed,
            "locked_quotes": instruments.locked,
            "lines_read": source.position.line,
            "rotations": source.rotations,
            "truncations": source.truncations,
            "bytes_read": source.bytes_read,
            "seconds_since_last_input": round(time.monotonic() - source.last_data_at, 3),
            "records_by_action": self._parser_counts("by_action"),
            "records_by_type": self._parser_counts("by_type"),
            "checkpoints": 0 if store is None else store.saves,
            "checkpoint_bytes": 0 if store is None else store.last_size,
            "checkpoint_seconds": 0.0 if store is None else round(store.last_seconds, 4),
        }

    def _parser_counts(self, name: str) -> dict[str, int]:
        """Databento MBO records by action (``A``, ``C``, ``R``...), or DBN records by type
        (``mbo``, ``symbol_mapping``, ``system``...); empty for L3 CSV."""
        parser = None if self._parse is None else self._parse.parser
        return dict(getattr(parser, name, {}))

    def log_summary(self) -> None:
        """The closing log line: every counter, elapsed time and rate."""
        if not self.started:
            return
        elapsed = self.clock() - self._started_at
        counters = self.counters()
        if self.settings.instruments is not None:
            counters["instruments_not_seen"] = instruments_not_seen(
                self.settings.instruments, self.instruments, self.namer
            )
        self.log.info(
            "summary",
            **counters,
            elapsed_s=round(elapsed, 3),
            events_per_s=round(counters[self.rate_counter] / max(elapsed, 1e-9)),
            stopped_by=self.stopped_by or "end_of_input",
        )
        if self.settings.interactive:
            from l3tol1.ui import print_summary

            print_summary(counters, elapsed, self.stderr)


# -- checks before anything is touched -----------------------------------------------------------


def _input_kind(path: Path, follow: bool | None, input_format: str | None) -> str:
    """ "file" (followed or read to its end) or "stream" (read once: stdin, a pipe or device,
    a compressed file, a DBN file).

    :raises InputError: the input is missing (and not to be waited for) or a directory.
    """
    if path == STDIN or is_stream(path) or input_format == "dbn":
        return "stream"
    try:
        with open(path, "rb") as file:
            head = file.read(MAGIC_BYTES)
    except FileNotFoundError as exc:
        if follow is False:
            raise InputError(f"input file {path} does not exist") from exc
        return "file"  # waited for
    except IsADirectoryError as exc:
        raise InputError(f"input {path} is a directory, not a file") from exc
    except OSError as exc:
        raise InputError(f"cannot read input {path}: {exc.strerror}") from exc
    # --input-format csv reads a file that starts like DBN as CSV; compressed CSV is still
    # compressed (and read to its end).
    dbn = head.startswith(DBN_MAGIC) and input_format != "csv"
    return "stream" if codec_of(head) is not None or dbn else "file"


def _describe(path: Path, kind: str) -> str:
    if path == STDIN:
        return "standard input"
    what = "a compressed or DBN file" if os.path.isfile(path) else "a pipe or device"
    return f"{path} ({what})"


def _check_checkpointable(settings: Settings, kind: str, *, rows: bool) -> None:
    """A checkpoint needs an input that can be read again and outputs that can be cut back
    (the L1 output only where rows are written: `l3tol1 publish` writes none)."""
    if kind == "stream" and not os.path.isfile(settings.input_file):
        raise ConfigError(
            f"--checkpoint needs an input that can be read again, and"
            f" {_describe(settings.input_file, kind)} cannot"
        )
    outputs = [("--reject-file", settings.reject_path)]
    if rows and not settings.parquet:  # a dataset directory's parts are checked by the sink
        outputs.insert(0, ("--output-file", settings.output_file))
    for option, path in outputs:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            continue
        if not stat.S_ISREG(mode):
            raise ConfigError(
                f"--checkpoint needs regular output files, and {option} {path} is not one"
            )


def _check_paths(settings: Settings) -> None:
    """Refuse two names for one file: the input must never be written, and no two outputs may
    share a file. Files are compared by identity (device and inode: a hard link or a symlink is
    the same file), names that do not exist yet by their resolved path. Pipes and devices may
    take several outputs (``/dev/null``)."""
    named: dict[str, Path] = {}
    if settings.input_file != STDIN:
        named["--input-file"] = settings.input_file
    named["--output-file"] = settings.output_file
    named["--reject-file"] = settings.reject_path
    if settings.checkpoint is not None:
        named["--checkpoint"] = settings.checkpoint
    seen: dict[object, str] = {}
    for option, path in named.items():
        try:
            st = os.stat(path)
        except OSError:
            key: object = os.path.realpath(path)
        else:
            directory_wanted = option == "--output-file" and settings.parquet
            if option != "--input-file" and not stat.S_ISREG(st.st_mode):
                if stat.S_ISDIR(st.st_mode) and not directory_wanted:
                    raise ConfigError(f"{option} {path} is a directory")
                if not stat.S_ISDIR(st.st_mode):
                    continue
            key = (st.st_dev, st.st_ino)
        if key in seen:
            raise ConfigError(f"{option} and {seen[key]} name the same file {path}")
        seen[key] = option


def _option_values(options: RunOptions, flags: list[str]) -> str:
    """``--max-pending 1000, --start-seq none`` for these flags."""
    parts = []
    for flag in flags:
        value = getattr(options, flag.removeprefix("--").replace("-", "_"))
        if isinstance(value, tuple):
            value = format_instruments(value)
        elif isinstance(value, float):
            value = f"{value:g}"
        parts.append(f"{flag} {'none' if value is None else value}")
    return ", ".join(parts)
