"""A worker's state on JetStream (SPEC §13): the books of a partition and the L3 message they
include, saved on the partition's state subject with the rows they cover (work.py).

Zstd-compressed JSON, its books as the checkpoint's (`InstrumentsState.to_plain`, or for a schema
of rows `DepthsState.to_plain`, SPEC §14, with the names of Databento's rows met so far), read
back checked whole: a damaged state is a foreign message to the worker, never a crash.
"""

from __future__ import annotations

import json
from typing import Any

from l3tol1.core.instruments import InstrumentsState
from l3tol1.core.plain import PlainReader
from l3tol1.core.schemas import DepthsState
from l3tol1.jetstream.wire import Malformed

__all__ = ["decode_state", "encode_state"]

_LAYOUTS = ("0,0", "0,1", "1,0", "1,1")


def encode_state(
    books: InstrumentsState | DepthsState,
    applied: int,
    layout: str,
    ended: bool,
    row_names: dict[tuple[str, int], str] | None = None,
) -> bytes:
    """A partition's state: its books, the stream seq of the last L3 message they include, the
    rows' layout, whether the partition's feed ended, and (a schema of rows) the names of
    Databento's rows by (book key, day), for the sampled rows still to come."""
    import zstandard

    state: dict[str, Any] = {
        "applied": applied,
        "layout": layout,
        "ended": ended,
        "books": books.to_plain(),
    }
    if isinstance(books, DepthsState):
        state["row_names"] = [[key, day, name] for (key, day), name in (row_names or {}).items()]
    return zstandard.ZstdCompressor(level=1).compress(json.dumps(state).encode())


def decode_state(data: bytes, schema: str = "l1") -> dict[str, Any]:
    """A state as `encode_state` wrote it for a feed of ``schema``, its books checked whole (an
    `InstrumentsState`, or a `DepthsState` of that schema with ``row_names``).

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
        if schema == "l1":
            state["books"] = InstrumentsState.from_plain(state["books"], "books", PlainReader())
        else:
            books = DepthsState.from_plain(state["books"], "books", PlainReader())
            if books.schema != schema:
                raise ValueError(f"books of schema {books.schema}, not {schema}")
            state["books"] = books
            state["row_names"] = _row_names(state["row_names"])
    except (zstandard.ZstdError, ValueError, KeyError, TypeError) as exc:
        # (damaged books are a PlainDataError, a ValueError)
        raise Malformed(f"not a worker's state: {exc}") from exc
    return dict(state)


def _row_names(entries: Any) -> dict[tuple[str, int], str]:
    if not isinstance(entries, list):
        raise ValueError("row_names is not a list")
    found = {}
    for entry in entries:
        if not (
            isinstance(entry, list)
            and len(entry) == 3
            and type(entry[0]) is str
            and type(entry[1]) is int
            and type(entry[2]) is str
        ):
            raise ValueError(f"not a row name: {entry!r:.100}")
        found[(entry[0], entry[1])] = entry[2]
    return found
