"""What travels through JetStream between the roles (SPEC §13): names, headers, message bodies.

Pure: no I/O, no NATS import. Three subjects per partition of a feed:

    <prefix>.l3.<feed>.<p>     ordered L3 events (publish -> work), stream <prefix>-<feed>-l3
    <prefix>.l1.<feed>.<p>     L1 quotes (work -> collect),          stream <prefix>-<feed>-l1
    <prefix>.state.<feed>.<p>  the owner's checkpoint (books and the last L3 message applied),
                               in the L1 stream, so that it commits atomically with the rows

A message body is a batch of events, quotes or a schema's rows packed by the core
(`l3tol1.core.wire`: fixed-size binary records, packed and unpacked in C by the compiled core;
rows by the reference). An end-of-feed mark is a message with the `END` header and no body. An
L3 message may carry the publisher's marks (gaps, the feed's clock: `jetstream.marks`) in its
`MARKS` header, with or without events.

Anyone may publish on these subjects. "An l3tol1 message" is one whose headers and body are all
what l3tol1 writes, and this module is the one place that says what that is: the writers build
their headers here (`l3_headers`, `l1_headers`), and every reader (the publisher looking for its
own last message, the worker, the collector) checks a message here (`read_l3`, `read_l1`,
`read_state_part`) before acting on any of its headers. Anything else is foreign: `Malformed`.
Headers outside ours (NATS's ``Nats-*``, a tracer's) are ignored; an ``L3tol1-*`` header that
this kind of message does not carry makes it foreign.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import zstandard

from l3tol1.jetstream.marks import Mark, decode_marks, encode_marks

__all__ = [
    "L1Message",
    "L3Message",
    "Malformed",
    "Names",
    "decode_layout",
    "encode_body",
    "encode_layout",
    "l1_headers",
    "l3_headers",
    "partition_of_subject",
    "plain_body",
    "read_l1",
    "read_l3",
    "read_state_part",
    "state_headers",
]

# Headers of our own (NATS's are Nats-*).
LAST_SEQ = "L3tol1-Last-Seq"  # the feed seq of the last event in an L3 message
LAYOUT = "L3tol1-Layout"  # "1,0": whether rows have an instrument column, ns times
END = "L3tol1-End"  # an end-of-feed mark: on L3, the partition count; on L1, `L1_END`
PREV = "L3tol1-Prev"  # on L3 messages: the stream seq of the subject's message before this one
ROW_NAMES = "L3tol1-Row-Names"  # Databento: JSON [[book key, day, name of its rows], ...]
MARKS = "L3tol1-Marks"  # on L3 messages: the publisher's marks among its events (marks.py)
COVERS = "L3tol1-Covers"  # on L1 messages: the L3 stream seq the partition's rows now reach
STATE_PART = "L3tol1-State-Part"  # "i/n": one of the n messages of a worker's state
# On L3 messages: "zstd" when the body is one zstd frame of the packed events (absent: the packed
# events as they are, as every message before compression was).
ENCODING = "L3tol1-Encoding"
ZSTD = "zstd"
L1_END = "1"  # the value of a worker's end mark
# A message stays well under NATS's default max_payload (1 MiB).
MAX_BODY = 512 * 1024

_OURS = "l3tol1-"  # the prefix of our headers (compared without case: a proxy may fold it)
_L3_HEADERS = frozenset({LAST_SEQ, LAYOUT, END, PREV, ROW_NAMES, MARKS, ENCODING})
_L1_HEADERS = frozenset({LAYOUT, COVERS, END})
_STATE_HEADERS = frozenset({STATE_PART})
_LAYOUTS = frozenset({"0,0", "0,1", "1,0", "1,1"})
_MAX_SEQ = 2**64 - 1  # seqs and stream sequences are unsigned 64-bit


class Malformed(ValueError):
    """A message that is not one l3tol1 writes (its reason, in a few words)."""


@dataclass(frozen=True, slots=True)
class Names:
    """The stream and subject names of one feed."""

    prefix: str
    feed: str

    @property
    def l3_stream(self) -> str:
        return f"{self.prefix}-{self.feed}-l3"

    @property
    def l1_stream(self) -> str:
        return f"{self.prefix}-{self.feed}-l1"

    def l3(self, partition: int | str) -> str:
        return f"{self.prefix}.l3.{self.feed}.{partition}"

    def l1(self, partition: int | str) -> str:
        return f"{self.prefix}.l1.{self.feed}.{partition}"

    def state(self, partition: int | str) -> str:
        return f"{self.prefix}.state.{self.feed}.{partition}"

    def consumer(self, partition: int) -> str:
        return f"work-{partition}"


def encode_layout(layout: tuple[bool, bool]) -> str:
    return f"{int(layout[0])},{int(layout[1])}"


def decode_layout(text: str) -> tuple[bool, bool]:
    """A layout that `encode_layout` wrote (checked by `read_l3`/`read_l1` first)."""
    a, b = text.split(",")
    return a == "1", b == "1"


# -- writing -------------------------------------------------------------------------------------


def encode_body(body: bytes, level: int) -> tuple[bytes, str | None]:
    """An L3 body as it travels, and its `ENCODING` (None: as it is): one zstd frame at
    ``level`` when that is smaller (packed events shrink about 5 times: fewer bytes for the
    server to take in, store and deliver), else the body itself (an empty one, a tiny one).
    Safe in any thread (a compressor of its own: one costs microseconds)."""
    if not body:
        return body, None
    packed = zstandard.ZstdCompressor(level=level).compress(body)
    return (packed, ZSTD) if len(packed) < len(body) else (body, None)


def l3_headers(
    *,
    last_seq: int,
    layout: str,
    prev: int,
    end_of: int | None = None,
    row_names: Mapping[tuple[str, int], str] | None = None,
    marks: list[Mark] | None = None,
    encoding: str | None = None,
) -> dict[str, str]:
    """The headers of an L3 message: a batch of events (and ``marks`` among them; its body in
    ``encoding``, see `encode_body`), or (``end_of``: the partition count) a partition's end
    mark."""
    headers = {LAST_SEQ: str(last_seq), LAYOUT: layout, PREV: str(prev)}
    if end_of is not None:
        headers[END] = str(end_of)
    if encoding is not None:
        headers[ENCODING] = encoding
    if marks:
        headers[MARKS] = encode_marks(marks)
    if row_names:
        rows = [(key, day, name) for (key, day), name in sorted(row_names.items())]
        headers[ROW_NAMES] = json.dumps(rows, separators=(",", ":"))
    return headers


def l1_headers(*, layout: str, covers: int, end: bool = False) -> dict[str, str]:
    """The headers of an L1 message: rows (or none: a commit of books alone), or an end mark."""
    headers = {LAYOUT: layout, COVERS: str(covers)}
    if end:
        headers[END] = L1_END
    return headers


def state_headers(index: int, count: int) -> dict[str, str]:
    """The headers of part ``index`` (from 1) of the ``count`` messages of a worker's state."""
    return {STATE_PART: f"{index}/{count}"}


# -- reading -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class L3Message:
    """An L3 message as the publisher wrote it."""

    prev: int  # the stream seq of its subject's message before it (0: none)
    last_seq: int  # the place of the last event the partition holds with it (-1: none)
    layout: str
    end: bool  # an end mark (no events)
    row_names: dict[tuple[str, int], str]
    events: Any  # the core's unpacked events (None for an end mark; [] with marks alone)
    marks: list[Mark]  # in place order, each at or below ``last_seq``


@dataclass(frozen=True, slots=True)
class L1Message:
    """An L1 message as a worker wrote it."""

    covers: int  # the L3 stream seq the partition's rows reach with it
    layout: str
    end: bool  # an end mark (no rows)
    quotes: Any  # the core's unpacked quotes (None when it has no body)


def read_l3(
    headers: Mapping[str, str] | None,
    body: bytes,
    *,
    seq: int,
    partitions: int,
    unpack: Callable[[bytes], Any],
) -> L3Message:
    """The L3 message stored at stream seq ``seq`` of a feed of ``partitions``, checked whole:
    every header ours and well formed, ``L3tol1-Prev`` before ``seq``, an end mark's value the
    partition count and its body empty, else a body of at least one event (``unpack``: the
    core's `unpack_events`; first decompressed when `ENCODING` says ``zstd``, to at most
    `MAX_BODY` bytes) or marks alone, whose places ``L3tol1-Last-Seq`` covers.

    :raises Malformed: it is not a message the publisher writes.
    """
    found = _ours(headers, _L3_HEADERS, "an L3 message")
    prev = _integer(found, PREV, 0, seq - 1)
    last_seq = _integer(found, LAST_SEQ, -1, _MAX_SEQ)
    layout = _layout(found)
    end = END in found
    if end:
        if found[END] != str(partitions):
            raise Malformed(f"{END} is {found[END]!r:.40}, not the partition count {partitions}")
        if body or ROW_NAMES in found or MARKS in found or ENCODING in found:
            raise Malformed("an end mark with a body")
        return L3Message(prev, last_seq, layout, True, {}, None, [])
    body = plain_body(found, body)
    row_names = _row_names(found[ROW_NAMES]) if ROW_NAMES in found else {}
    marks: list[Mark] = []
    if MARKS in found:
        try:
            marks = decode_marks(found[MARKS])
        except ValueError as exc:
            raise Malformed(f"{MARKS}: {exc}") from exc
        if marks[-1].place > last_seq:
            raise Malformed(f"a mark at {marks[-1].place}, past {LAST_SEQ} {last_seq}")
    events = _unpack(unpack, body, "event") if body or not marks else []
    return L3Message(prev, last_seq, layout, False, row_names, events, marks)


def read_l1(
    headers: Mapping[str, str] | None, body: bytes, *, unpack: Callable[[bytes], Any]
) -> L1Message:
    """An L1 message checked whole: every header ours and well formed; an end mark's value
    `L1_END` and its body empty; a body, when there is one, of at least one quote (``unpack``:
    the core's `unpack_quotes`).

    :raises Malformed: it is not a message a worker writes.
    """
    found = _ours(headers, _L1_HEADERS, "an L1 message")
    covers = _integer(found, COVERS, 1, _MAX_SEQ)
    layout = _layout(found)
    end = END in found
    if end and found[END] != L1_END:
        raise Malformed(f"{END} is {found[END]!r:.40}, not {L1_END!r}")
    if end and body:
        raise Malformed("an end mark with a body")
    quotes = _unpack(unpack, body, "quote") if body else None
    return L1Message(covers, layout, end, quotes)


def read_state_part(headers: Mapping[str, str] | None) -> tuple[int, int]:
    """(i, n) of a message of a worker's state: part i (from 1) of n.

    :raises Malformed: its headers are not a state part's.
    """
    found = _ours(headers, _STATE_HEADERS, "a state message")
    if STATE_PART not in found:
        raise Malformed(f"no {STATE_PART} header")
    index, slash, count = found[STATE_PART].partition("/")
    if not (slash and _plain(index) and _plain(count) and 1 <= int(index) <= int(count)):
        raise Malformed(f"{STATE_PART} is {found[STATE_PART]!r:.40}")
    return int(index), int(count)


def partition_of_subject(
    subject: str, subject_of: Callable[[str], str], partitions: int
) -> int | None:
    """The partition ``p`` of ``subject`` when it is ``subject_of(p)`` (`Names.l1`, say) with
    ``p`` a partition number below ``partitions`` as `str` writes it; else None (foreign)."""
    token = subject.rpartition(".")[2]
    if not _plain(token) or int(token) >= partitions or subject_of(token) != subject:
        return None
    return int(token)


def _ours(headers: Mapping[str, str] | None, allowed: frozenset[str], kind: str) -> dict[str, str]:
    """Our headers of a message, each one this kind of message carries."""
    found = {}
    for name, value in (headers or {}).items():
        if not str(name).lower().startswith(_OURS):
            continue  # NATS's, or anyone's: not ours to judge
        if name not in allowed:
            raise Malformed(f"{name!s:.40} is not a header of {kind}")
        found[name] = value
    return found


def _plain(text: str) -> bool:
    """A plain decimal integer as `str` writes one: ASCII digits, no sign, no leading zero."""
    return text.isascii() and text.isdigit() and (text == "0" or text[0] != "0")


def _integer(found: Mapping[str, str], name: str, low: int, high: int) -> int:
    text = found.get(name)
    if text is None:
        raise Malformed(f"no {name} header")
    negative = text.startswith("-")
    digits = text[1:] if negative else text
    if not _plain(digits) or (negative and digits == "0") or not low <= int(text) <= high:
        raise Malformed(f"{name} is {text!r:.40}, not an integer from {low} to {high}")
    return int(text)


def _layout(found: Mapping[str, str]) -> str:
    layout = found.get(LAYOUT)
    if layout not in _LAYOUTS:
        raise Malformed(f"{LAYOUT} is {layout!r:.40}" if layout is not None else f"no {LAYOUT}")
    return layout


def _unpack(unpack: Callable[[bytes], Any], body: bytes, kind: str) -> Any:
    try:
        records = unpack(body)
    except (ValueError, TypeError) as exc:  # the core's word for a body it cannot read
        raise Malformed(str(exc)) from exc
    if not len(records):
        raise Malformed(f"no {kind} in its body")
    return records


def plain_body(headers: Mapping[str, str] | None, body: bytes) -> bytes:
    """An L3 body as the publisher packed it: decompressed when its `ENCODING` says ``zstd``
    (one frame that says its size, at most `MAX_BODY`, the publisher's bound, so that no message
    makes a reader allocate more), else as it is.

    :raises Malformed: another encoding, or a body that is not such a frame.
    """
    encoding = (headers or {}).get(ENCODING)
    if encoding is None:
        return body
    if encoding != ZSTD:
        raise Malformed(f"{ENCODING} is {encoding!r:.40}, not {ZSTD!r}")
    try:
        size = zstandard.frame_content_size(body)
        if not 0 < size <= MAX_BODY:
            raise Malformed(f"a zstd body of {size} bytes, not 1 to {MAX_BODY}")
        plain = zstandard.ZstdDecompressor().decompress(body, max_output_size=MAX_BODY)
    except zstandard.ZstdError as exc:
        raise Malformed(f"not a zstd body: {exc}") from exc
    if len(plain) != size:
        raise Malformed(f"a zstd body of {len(plain)} bytes, not the {size} its frame says")
    return plain


def _row_names(text: str) -> dict[tuple[str, int], str]:
    """A message's ``L3tol1-Row-Names`` header: a JSON list of [book key, day, name]."""
    try:
        entries = json.loads(text)
    except ValueError as exc:
        raise Malformed(f"{ROW_NAMES} is not JSON") from exc
    if not isinstance(entries, list):
        raise Malformed(f"{ROW_NAMES} is not a list")
    found = {}
    for entry in entries:
        if not (
            isinstance(entry, list)
            and len(entry) == 3
            and type(entry[0]) is str
            and type(entry[1]) is int
            and type(entry[2]) is str
        ):
            raise Malformed(f"not a row name: {entry!r:.100}")
        found[(entry[0], entry[1])] = entry[2]
    return found
