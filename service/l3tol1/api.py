"""l3tol1 as a library (SPEC §15): the file job as functions, for notebooks and scripts.

    convert(input, output, *, schema="l1", **options) -> Summary   the file job, to a file
    read(input, *, schema="l1", **options) -> pyarrow.Table          the rows, in memory
    iter_batches(input, *, schema="l1", **options)                   the rows, batch by batch

Each is the CLI's own run (`run.file_job`: the same assembly, checks, core and sinks), with the
options named as the long flags (``max_pending=``, ``instruments=``...) and checked by the same
rules, so a bad one raises the CLI's message (`Error` subclasses). The input is read to its end
(``--no-follow``); environment variables (``L3TOL1_*``) are not read: a call says everything.
Bad rows never raise: they are counted in the summary, and go to ``reject_file=`` when given.

`read` and `iter_batches` write the Parquet output (SPEC §11, §14) into a temporary directory and
read it back, so their values and order are exactly the Parquet output's; `iter_batches` holds
one row group at a time. Inside a running event loop (Jupyter), a run goes on in a thread of its
own, and the call waits for it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from l3tol1.errors import ConfigError, L3Error
from l3tol1.signals import Stop

if TYPE_CHECKING:
    import pyarrow as pa

    from l3tol1.run import Pipeline

__all__ = ["CallStop", "Input", "Summary", "convert", "iter_batches", "read"]

Input = str | os.PathLike[str] | IO[bytes]
# What the library never takes: where the rows go is the call's, and the input is read to its end.
_NOT_OPTIONS = {
    "input_file": "give the input as the first argument",
    "output_file": "give the output as the second argument of convert",
    "follow": "the library reads the input to its end; use the CLI to follow a file",
}
_COPY_SIZE = 1 << 20


@dataclass(frozen=True, slots=True)
class Summary:
    """What a run did: the counters of the CLI's summary line (SPEC §4, §5, §9, §12)."""

    events_read: int
    events_applied: int
    rows_written: int
    rejects: dict[str, int] = field(default_factory=dict)  # by reason
    anomalies: dict[str, int] = field(default_factory=dict)  # by kind
    gaps_skipped: int = 0
    seqs_lost: int = 0
    last_seq: int | None = None
    instruments: int = 0
    events_skipped: int = 0  # of instruments left out by ``instruments=``
    crossed_quotes: int = 0  # rows written with bid > ask
    locked_quotes: int = 0
    lines_read: int = 0  # lines (or DBN records) of the input
    bytes_read: int = 0
    records_by_action: dict[str, int] = field(default_factory=dict)  # Databento MBO input
    records_by_type: dict[str, int] = field(default_factory=dict)

    @property
    def rejected(self) -> int:
        """Rows rejected, whatever the reason."""
        return sum(self.rejects.values())

    @classmethod
    def of(cls, counters: Mapping[str, Any]) -> Summary:
        return cls(**{f.name: counters[f.name] for f in fields(cls)})


def convert(input: Input, output: str | os.PathLike[str], **options: Any) -> Summary:
    """Convert ``input`` (a path, or a binary file object) into ``output`` (CSV, or a Parquet
    dataset for a name ending in .parquet or ``output_format="parquet"``), as `l3tol1 -i INPUT
    -o OUTPUT --no-follow` with the options given (``schema="mbp-1"``, ``max_pending=10``...).

    :raises Error: a bad option or value, an input that cannot be read, an output that cannot
        be written: the CLI's message.
    """
    return _run(input, Path(output), options)


def read(input: Input, **options: Any) -> pa.Table:
    """The rows of ``input`` as one Arrow table: the Parquet output's columns, values and order.

    :raises Error: as `convert`.
    """
    _no_output_format(options)
    with tempfile.TemporaryDirectory(prefix="l3tol1-") as temp:
        dataset = Path(temp) / "rows.parquet"
        _run(input, dataset, {**options, "output_format": "parquet"})
        import pyarrow.parquet as pq

        return pq.read_table(dataset)


def iter_batches(input: Input, **options: Any) -> Iterator[pa.RecordBatch]:
    """The rows of ``input`` as Arrow record batches (one Parquet row group at a time): the
    memory held is a batch's, whatever the input's size. The rows are converted first, into a
    temporary Parquet dataset (about an eighth of the CSV output's size), removed at the end.

    :raises Error: as `convert`.
    """
    _no_output_format(options)
    with tempfile.TemporaryDirectory(prefix="l3tol1-") as temp:
        dataset = Path(temp) / "rows.parquet"
        _run(input, dataset, {**options, "output_format": "parquet"})
        import pyarrow.parquet as pq

        for part in sorted(dataset.glob("part-*.parquet")):
            yield from pq.ParquetFile(part).iter_batches()


def _no_output_format(options: Mapping[str, Any]) -> None:
    if "output_format" in options:
        raise ConfigError("output_format is not an option of read or iter_batches: rows are Arrow")


# -- one run -------------------------------------------------------------------------------------


def _run(input: Input, output: Path, options: dict[str, Any]) -> Summary:
    with _input_path(input) as path:
        settings = _settings(path, output, options)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return _run_here(settings)
        # A running loop (Jupyter's): this thread cannot run another; a thread of its own can.
        result: list[Summary | BaseException] = []

        def run() -> None:
            try:
                result.append(_run_here(settings))
            except BaseException as exc:  # handed to the caller's thread
                result.append(exc)

        worker = threading.Thread(target=run, name="l3tol1", daemon=True)
        worker.start()
        worker.join()
        if isinstance(result[0], BaseException):
            raise result[0]
        return result[0]


def _run_here(settings: Any) -> Summary:
    """The file job in this thread's own event loop."""
    import anyio

    from l3tol1.cli import _backend, _root_error
    from l3tol1.log import SafeStream, configure_logging, get_logger
    from l3tol1.run import file_job

    stderr = SafeStream(sys.stderr)
    configure_logging(settings.log_format, settings.log_level, stderr)
    pipeline: Pipeline = file_job(settings, stop=CallStop(get_logger()), stderr=stderr)
    try:
        anyio.run(pipeline.run, **_backend())
    except BaseException as exc:
        error = _root_error(exc)
        if isinstance(error, L3Error | KeyboardInterrupt):
            raise error from None
        raise
    return Summary.of(pipeline.report.counters())


def _settings(path: Path, output: Path, options: dict[str, Any]) -> Any:
    """The run's settings, through the CLI's own parser (its rules, defaults and messages)."""
    import difflib

    from l3tol1.cli import parse_settings
    from l3tol1.options import OPTIONS

    by_name = {option.dest: option for option in OPTIONS}
    argv = ["-i", str(path), "-o", str(output), "--no-follow"]
    options = {"log_level": "warning", "log_format": "console", **options}
    for name, value in options.items():
        if name in _NOT_OPTIONS:
            raise ConfigError(f"{name} is not an option of the library: {_NOT_OPTIONS[name]}")
        option = by_name.get(name)
        if option is None:
            close = difflib.get_close_matches(name, sorted(by_name), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(f"{name!r} is not an option of l3tol1{hint}")
        if value is None:
            continue  # the option's default
        flag = option.flags[-1]
        values = value if option.repeat and isinstance(value, list | tuple) else [value]
        for each in values:
            argv += [flag, _text(each, option.repeat)]
    try:
        return parse_settings(argv, environ={})
    except SystemExit as exc:  # argparse's own refusals: said on stderr already
        raise ConfigError(f"bad options: {options}") from exc


def _text(value: Any, name_list: bool) -> str:
    """An option's value as its flag takes it (names of ``instruments=`` as CSV fields)."""
    if isinstance(value, os.PathLike):
        return str(os.fspath(value))
    text = str(value)
    if name_list and any(c in text for c in ',"'):
        return '"' + text.replace('"', '""') + '"'
    return text


class _input_path:
    """A path for the input: its own, or for a file object a pipe that a thread fills."""

    def __init__(self, input: Input) -> None:
        self.input = input
        self._read_fd = -1
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Path:
        if isinstance(self.input, str | os.PathLike):
            return Path(self.input)
        source = self.input
        if not hasattr(source, "read"):
            raise ConfigError(f"input must be a path or a binary file object, not {source!r}")
        read_fd, write_fd = os.pipe()
        self._read_fd = read_fd

        def copy() -> None:
            try:
                with open(write_fd, "wb", closefd=True) as pipe:
                    while chunk := source.read(_COPY_SIZE):
                        pipe.write(chunk)
            except (BrokenPipeError, ValueError):  # the run ended first (an error, say)
                pass

        self._thread = threading.Thread(target=copy, name="l3tol1-input", daemon=True)
        self._thread.start()
        return Path(f"/dev/fd/{read_fd}")

    def __exit__(self, *exc: object) -> None:
        if self._read_fd >= 0:
            os.close(self._read_fd)  # a copy still writing gets a broken pipe and ends
            if self._thread is not None:
                self._thread.join()


class CallStop(Stop):
    """The stop of a library call: no signal handlers (they belong to the caller's program,
    and a thread cannot install them); Ctrl-C in the caller's thread ends the run as it would
    any Python code."""

    async def watch(self) -> None:
        import anyio

        await anyio.sleep_forever()
