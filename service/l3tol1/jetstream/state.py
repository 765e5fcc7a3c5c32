"""A worker's state on JetStream (SPEC §13): the books of a partition and the L3 message they
include, saved on the partition's state subject with the rows they cover (work.py).

Zstd-compressed JSON, its books as the checkpoint's (`InstrumentsState.to_plain`), read back
checked whole: a damaged state is a foreign message to the worker, never a crash.
"""

from __future__ import annotations

import json
from typing import Any

from l3tol1.core.instruments import InstrumentsState
from l3tol1.core.plain import PlainReader
from l3tol1.jetstream.wire import Malformed

__all__ = ["decode_state", "encode_state"]

_LAYOUTS = ("0,0", "0,1", "1,0", "1,1")


def encode_state(books: InstrumentsState, applied: int, layout: str, ended: bool) -> bytes:
    """A partition's state: its books, the stream seq of the last L3 message they include, the
    rows' layout, and whether the partition's feed ended."""
    import zstandard

    state = {"applied": applied, "layout": layout, "ended": ended, "books": books.to_plain()}
    return zstandard.ZstdCompressor(level=1).compress(json.dumps(state).encode())


def decode_state(data: bytes) -> dict[str, Any]:
    """A state as `encode_state` wrote it, its books checked whole (an `InstrumentsState`).

    :raises Malformed: it is not.
    """
    import zstandard

    try:
        state = json.loads(zstandard.ZstdDecompressor().decompress(data))
        if not (
            type(state["applied"]) is int
            and state["layout"] in _LAYOUTS
            and type(state["ended"]) is bool
        ):
            raise ValueError("bad fields")
        state["books"] = InstrumentsState.from_plain(state["books"], "books", PlainReader())
    except (zstandard.ZstdError, ValueError, KeyError, TypeError) as exc:
        # (damaged books are a PlainDataError, a ValueError)
        raise Malformed(f"not a worker's state: {exc}") from exc
    return dict(state)
