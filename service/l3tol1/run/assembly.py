"""The assembly of a run (SPEC §6-12): from the settings, the core, the source, the sinks, the
writer, the resequencer, the books and the checkpoint, built and checked, nothing touched yet.

One assembly serves every face: the file job and `l3tol1 publish` build their `Parts` here (the
publisher without an L1 output), `l3tol1 collect` its output and writer; each part is handed only
the values it needs. Everything that makes a run impossible is found here, before any output is
cut back or emptied: colliding paths, a missing input (no-follow), an option that does not fit the
input, a damaged or foreign checkpoint, an output that cannot be opened or is locked.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from l3tol1.checkpoint import CheckpointStore, RunOptions
from l3tol1.core import AnyCore, load
from l3tol1.core.l1 import csv_header
from l3tol1.core.naming import MboNamer
from l3tol1.core.schemas import Schema, schema_named
from l3tol1.errors import ConfigError
from l3tol1.run.checks import check_checkpointable, check_paths, input_kind
from l3tol1.run.resume import Resume, open_checkpoint
from l3tol1.settings import Settings
from l3tol1.sinks.base import Sink
from l3tol1.sinks.csv import CsvSink
from l3tol1.sinks.none import NoOutput
from l3tol1.sinks.parquet import ParquetSink
from l3tol1.sinks.rejects import RejectSink
from l3tol1.sinks.writer import Writer
from l3tol1.sources.base import Source
from l3tol1.sources.file import FileSource
from l3tol1.sources.stream import StreamSource

if TYPE_CHECKING:
    from l3tol1.core import protocols

__all__ = ["Parts", "assemble", "build_output", "load_core", "use_schema"]


@dataclass(slots=True)
class Parts:
    """Everything one run is made of (see `assemble`)."""

    core: AnyCore
    follow: bool  # the input is followed (tail -F)
    options: RunOptions  # what decides the rows: a checkpoint records them
    source: Source
    output: Sink
    rejects: RejectSink
    writer: Writer
    feed: protocols.Feed[Any]
    namer: MboNamer
    instruments: protocols.Instruments[Any, Any] | protocols.Depths[Any, Any]
    store: CheckpointStore | None = None
    resume: Resume | None = None
    notes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # said at start


def load_core(name: str) -> AnyCore:
    """The core ``--core`` names.

    :raises ConfigError: the compiled core was asked for and was not built.
    """
    try:
        return load(name)
    except ImportError as exc:
        raise ConfigError(
            f"--core compiled: the compiled core cannot be used ({exc}); use --core python or auto"
        ) from exc


def build_output(
    settings: Settings, core: AnyCore, *, follow: bool, clock: Callable[[], float] = time.monotonic
) -> Sink:
    """The L1 output the settings name: a CSV file, or a Parquet dataset (SPEC §11)."""
    schema = schema_named(settings.schema)
    if settings.parquet:
        return ParquetSink(
            settings.output_file,
            part_rows=settings.part_rows,
            part_interval=settings.part_interval if follow else None,
            clock=clock,
            schema=schema if schema.rows else None,
        )
    return CsvSink(settings.output_file, **_csv_format(schema, core))


def _csv_format(schema: Schema, core: AnyCore) -> dict[str, Any]:
    """A CSV output's formatter and header of a schema's rows (the core's formatters)."""
    if not schema.rows:
        return {"formatter": core.formatter, "header": csv_header}
    row_formatter = core.row_formatter
    return {
        "formatter": lambda *, with_instrument=False: row_formatter(
            schema, with_instrument=with_instrument
        ),
        "header": lambda instrument: row_formatter(schema, with_instrument=instrument).header(),
    }


def use_schema(output: Sink, schema: Schema, core: AnyCore) -> None:
    """Make an output of `build_output` write another schema's rows, before any row."""
    if isinstance(output, ParquetSink):
        output.use_schema(schema if schema.rows else None)
    elif isinstance(output, CsvSink):
        output.use_format(**_csv_format(schema, core))


def assemble(
    settings: Settings, *, rows: bool = True, clock: Callable[[], float] = time.monotonic
) -> Parts:
    """Build and check the parts of a run; lock the outputs (and the checkpoint), change
    nothing. ``rows``: the run writes L1 rows (`l3tol1 publish` does not).

    :raises ConfigError: anything that makes the run impossible (see the module's docstring).
    """
    core = load_core(settings.core)
    check_paths(settings, rows=rows)
    kind, follow = input_kind(settings)
    options = RunOptions(
        start_seq=settings.start_seq,
        max_pending=settings.max_pending,
        gap_timeout=settings.gap_timeout if follow else None,
        instrument_column=settings.instrument_column,
        instruments=settings.instruments,
        output_format=("parquet" if settings.parquet else "csv") if rows else None,
        schema=settings.schema,
    )
    output = build_output(settings, core, follow=follow, clock=clock) if rows else NoOutput()
    rejects = RejectSink(settings.reject_path)
    notes: list[tuple[str, dict[str, Any]]] = [
        ("environment_variable_ignored", {"detail": text}) for text in settings.warnings
    ]
    store = resume = None
    if settings.checkpoint is not None:
        check_checkpointable(settings, kind, rows=rows)
        store, resume, removed_temp = open_checkpoint(
            settings.checkpoint, options, settings.input_file, output, rejects
        )
        if removed_temp:
            notes.append(("checkpoint_temp_removed", {"path": str(settings.checkpoint)}))
    at = None if resume is None else resume.at
    source: Source
    if kind == "file":
        source = FileSource(
            settings.input_file,
            follow=follow,
            poll_interval=settings.poll_interval,
            resume=at,
            input_format=settings.input_format,
        )
    else:
        source = StreamSource(
            settings.input_file,
            resume=None if at is None else at[1:],
            input_format=settings.input_format,
        )
    feed = core.feed(
        start_seq=settings.start_seq,
        max_pending=settings.max_pending,
        gap_timeout=settings.gap_timeout if follow else None,
    )
    # Databento's books are kept by (publisher, instrument_id) keys; the namer turns
    # --instruments into the keys it keeps, as it meets them.
    namer = MboNamer(None if settings.instruments is None else frozenset(settings.instruments))
    schema = schema_named(settings.schema)
    instruments: protocols.Instruments[Any, Any] | protocols.Depths[Any, Any]
    if schema.rows and rows:
        instruments = core.depths(schema, settings.instruments, kept=namer.kept, name=namer.name)
    else:
        instruments = core.instruments(settings.instruments, kept=namer.kept)
    if resume is not None:
        checkpoint = resume.checkpoint
        feed.restore(checkpoint.feed, clock())
        if checkpoint.instruments is not None:
            instruments.restore(checkpoint.instruments)  # type: ignore[arg-type]
        namer.restore(checkpoint.names)
    # Opened and locked now, changed only when the run starts, once the input's header is good.
    output.open()
    try:
        rejects.open()
    except ConfigError:
        output.discard()
        raise
    writer = Writer(
        output,
        rejects,
        batch_size=settings.batch_size,
        max_flush_interval=settings.max_flush_interval,
        checkpointing=store is not None,
    )
    return Parts(
        core, follow, options, source, output, rejects, writer, feed, namer, instruments,
        store, resume, notes,
    )  # fmt: skip
