"""A checkpoint on disk (SPEC §8): JSON compressed with zstd, versioned, read back whole.

Each piece is turned into plain data by its own class (model.py); here they are put together
under a version number and compressed. Reading checks everything (schema, types, invariants):
a damaged checkpoint is one clear line, exit 2, never a traceback or a wrong resume. Every value
the cores can hold is accepted back (a Databento price is any int64). Earlier formats are
refused with a line that says so: finish that run with the version that started it, or remove
the checkpoint. Format 1 was plain JSON (l3tol1 0.1); format 2 had no in-band symbol mappings
nor day names in ``names`` (issue 17).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from l3tol1.checkpoint.model import Checkpoint, InputRecord, RunOptions
from l3tol1.core.feed import FeedState
from l3tol1.core.instruments import InstrumentsState
from l3tol1.core.naming import NamerState
from l3tol1.core.plain import PlainDataError, PlainReader
from l3tol1.core.schemas import DepthsState
from l3tol1.errors import CheckpointError
from l3tol1.sinks.base import output_state_from_plain
from l3tol1.sinks.rejects import RejectsState

__all__ = ["VERSION", "damaged", "decode", "encode"]

VERSION = 3
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# A checkpoint never legitimately decompresses to more than this (waiting events are bounded by
# --max-pending, books by memory): a bigger one is damage, refused before it fills the memory.
_MAX_JSON_BYTES = 4 << 30


def encode(checkpoint: Checkpoint) -> bytes:
    """The checkpoint as bytes on disk (zstd-compressed JSON)."""
    import zstandard

    books, output = checkpoint.instruments, checkpoint.output
    state = {
        "version": VERSION,
        "options": checkpoint.options.to_plain(),
        "input": checkpoint.input.to_plain(),
        "feed": checkpoint.feed.to_plain(),
        "instruments": None if books is None else books.to_plain(),
        "output": None if output is None else output.to_plain(),
        "rejects": checkpoint.rejects.to_plain(),
        "names": checkpoint.names.to_plain(),
    }
    text = json.dumps(state, separators=(",", ":"), ensure_ascii=False)
    return zstandard.ZstdCompressor(level=3).compress(text.encode())


def decode(data: bytes, path: Path) -> Checkpoint:
    """The checkpoint stored as ``data`` in file ``path``, checked whole.

    :raises CheckpointError: in one sentence, for another format or version, or any damage:
        bytes that do not decode, a missing key, a wrong type, a broken invariant.
    """
    if data[:1] == b"{":
        version = None
        with contextlib.suppress(ValueError, AttributeError):
            version = json.loads(data).get("version")
        if version == 1:
            raise _earlier(path, "l3tol1 0.1 (format 1)", "l3tol1 0.1")
        raise CheckpointError(f"checkpoint {path} is not an l3tol1 checkpoint")
    if not data.startswith(_ZSTD_MAGIC):
        raise CheckpointError(f"checkpoint {path} is not an l3tol1 checkpoint")
    import zstandard

    try:
        reader = zstandard.ZstdDecompressor().stream_reader(data)
        text = reader.read(_MAX_JSON_BYTES + 1)
        state = json.loads(text) if len(text) <= _MAX_JSON_BYTES else None
    except (zstandard.ZstdError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is damaged: {exc}") from exc
    if isinstance(state, dict) and state.get("version") == 2:
        raise _earlier(path, "an earlier l3tol1 (format 2)", "the version that started it")
    if not isinstance(state, dict) or state.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path} is not a format-{VERSION} l3tol1 checkpoint")
    read = PlainReader()
    try:
        options = RunOptions.from_plain(read.get(state, "options", ""), "options", read)
        books = InstrumentsState.from_plain if options.schema == "l1" else DepthsState.from_plain
        return Checkpoint(
            options=options,
            input=InputRecord.from_plain(read.get(state, "input", ""), "input", read),
            feed=FeedState.from_plain(read.get(state, "feed", ""), "feed", read),
            instruments=_optional(state, "instruments", books, read),
            output=_optional(state, "output", output_state_from_plain, read),
            rejects=RejectsState.from_plain(read.get(state, "rejects", ""), "rejects", read),
            names=NamerState.from_plain(read.get(state, "names", ""), "names", read),
        )
    except PlainDataError as exc:
        raise damaged(path, exc) from exc


def damaged(path: Path, exc: PlainDataError) -> CheckpointError:
    """The error of a checkpoint whose plain data is damaged."""
    return CheckpointError(f"checkpoint {path} is damaged ({exc}); remove it to start over")


def _optional(state: Any, key: str, read_piece: Any, read: PlainReader) -> Any:
    value = read.get(state, key, "")
    return None if value is None else read_piece(value, key, read)


def _earlier(path: Path, by: str, finish_with: str) -> CheckpointError:
    return CheckpointError(
        f"checkpoint {path} was written by {by}, which this version does not read: finish that"
        f" run with {finish_with}, or remove the checkpoint to start over"
    )
