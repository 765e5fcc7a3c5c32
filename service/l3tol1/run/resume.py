"""The resume decision (SPEC §8): does this run start over, or go on from a checkpoint?

A checkpoint is loaded whole and matched against the run: the options that decide the rows, the
input (found again by identity, rotated or not), the outputs (the same files, holding at least
what the checkpoint recorded). Any mismatch is one sentence naming both sides, exit 2, and
nothing touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from l3tol1.checkpoint import Checkpoint, CheckpointStore, RunOptions
from l3tol1.errors import CheckpointError
from l3tol1.options import format_instruments
from l3tol1.sinks.base import Sink
from l3tol1.sinks.rejects import RejectSink
from l3tol1.sources.locate import find_input

__all__ = ["Resume", "open_checkpoint"]


@dataclass(slots=True)
class Resume:
    """A checkpoint that belongs to this run, and where its input is read from again: the
    recorded file (perhaps under a rotated name), offset and line; None: from the start."""

    checkpoint: Checkpoint
    at: tuple[Path, int, int] | None


def open_checkpoint(
    path: Path,
    options: RunOptions,
    input_file: Path,
    output: Sink,
    rejects: RejectSink,
) -> tuple[CheckpointStore, Resume | None, bool]:
    """Lock the checkpoint ``path`` and load it: the store, the resume (None: no checkpoint
    yet) and whether a temporary file a crash left was removed.

    :raises CheckpointError: locked, unreadable, damaged, or of another run (naming what).
    """
    store = CheckpointStore(path)
    store.lock()
    try:
        checkpoint, removed_temp = store.load()
        resume = None
        if checkpoint is not None:
            resume = Resume(checkpoint, _match(checkpoint, path, options, input_file))
            output.check_resume(checkpoint.output, path)
            rejects.check_resume(checkpoint.rejects, path)
    except BaseException:
        store.unlock()
        raise
    return store, resume, removed_temp


def _match(
    checkpoint: Checkpoint, path: Path, options: RunOptions, input_file: Path
) -> tuple[Path, int, int] | None:
    changed = checkpoint.options.differences(options)
    if changed:
        recorded = option_values(checkpoint.options, changed)
        now = option_values(options, changed)
        raise CheckpointError(
            f"checkpoint {path} was written with {recorded}, but this run has {now}:"
            " restart with the same options, or remove the checkpoint to start over"
        )
    return find_input(checkpoint.input, input_file, path)


def option_values(options: RunOptions, flags: list[str]) -> str:
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
