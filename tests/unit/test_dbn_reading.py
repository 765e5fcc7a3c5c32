"""Reading a DBN stream (sources/dbn.py, sources/codecs.py): records cut whole whatever the
chunks, and zstd decompressed in pieces, damage reported after the bytes before it."""

from __future__ import annotations

import io
from itertools import pairwise

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from l3tol1.errors import InputError
from l3tol1.sources.codecs import decompressing
from l3tol1.sources.dbn import RecordSplitter


@st.composite
def record_bytes(draw: st.DrawFn) -> bytes:
    """Records of the usual size (56 bytes) and of others, now and then one whose length is
    shorter than a record header (damage: what follows is never handed out)."""
    out = []
    for _ in range(draw(st.integers(0, 40))):
        words = draw(st.sampled_from([14, 14, 14, 4, 5, 20, 64, 1, 0]))
        filler = draw(st.binary(min_size=1, max_size=1))
        out.append(bytes([words]) + filler * (max(words * 4, 2) - 1))
    return b"".join(out)


def split(data: bytes, cuts: list[int]) -> tuple[list[tuple[bytes, int]], str, int]:
    """(data, first record) of each whole-records block, the damage text, the bytes consumed."""
    splitter = RecordSplitter(56, 100, "in.dbn")
    blocks = []
    damage = ""
    bounds = [0, *sorted(c for c in cuts if c <= len(data)), len(data)]
    try:
        for start, end in pairwise(bounds):
            lines = splitter.feed(data[start:end])
            blocks.append((lines.data, lines.first_line))
        splitter.finish()
    except InputError as exc:
        damage = str(exc)
    return blocks, damage, splitter.offset


@settings(max_examples=300, deadline=None)
@given(record_bytes(), st.lists(st.integers(0, 3000), max_size=8))
def test_the_records_are_the_same_however_the_chunks_fall(data: bytes, cuts: list[int]) -> None:
    """Fed in any chunks, the records come out whole, numbered and counted as fed at once, and
    damage (or a record cut short at the end) is told the same."""
    whole, damage, offset = split(data, [])
    blocks, chunked_damage, chunked_offset = split(data, cuts)
    assert b"".join(b for b, _ in blocks) == b"".join(b for b, _ in whole)
    assert (chunked_damage, chunked_offset) == (damage, offset)
    records = 1
    for block, first in blocks:  # each block starts at the record after the last one's
        assert first == records
        at = 0
        while at < len(block):
            at += block[at] * 4
            records += 1
        assert at == len(block)


def zstd_reader(raw: bytes) -> io.BufferedReader:
    return io.BufferedReader(io.BytesIO(raw))  # type: ignore[arg-type]


def read_all(raw: bytes, size: int = 1 << 18) -> tuple[list[bytes], Exception | None]:
    reader = decompressing(zstd_reader(raw), "zstd")
    reads: list[bytes] = []
    try:
        while data := reader.read1(size):
            reads.append(data)
    except Exception as exc:  # the test looks at what it is
        return reads, exc
    return reads, None


DATA = bytes(range(256)) * 4000 + b"".join(i.to_bytes(4, "little") for i in range(200_000))


def test_frames_one_after_the_other() -> None:
    """Several frames, in reads of about the size asked for (one piece's worth more)."""
    raw = b"".join(zstandard.ZstdCompressor().compress(DATA[i::3]) for i in range(3))
    reads, error = read_all(raw, 1 << 16)
    assert error is None
    assert b"".join(reads) == b"".join(DATA[i::3] for i in range(3))
    assert len(reads) > 10
    assert max(len(r) for r in reads[:-1]) < (1 << 16) + (1 << 20)


def test_damage_comes_after_the_bytes_before_it() -> None:
    """A frame, then bytes that are no frame, in one raw read: the first frame's bytes are
    handed out first, then the error."""
    raw = zstandard.ZstdCompressor().compress(DATA) + b"not a zstd frame" * 8
    reads, error = read_all(raw)
    assert isinstance(error, zstandard.ZstdError)
    assert b"".join(reads) == DATA


def test_a_stream_cut_inside_a_frame() -> None:
    """Cut short inside a frame: what it holds, then EOFError."""
    raw = zstandard.ZstdCompressor().compress(DATA)
    reads, error = read_all(raw[: len(raw) // 2])
    assert isinstance(error, EOFError)
    assert DATA.startswith(b"".join(reads))


@pytest.mark.parametrize("size", [-1, 1, 1 << 20])
def test_any_size_asked(size: int) -> None:
    """Whatever the size asked for, every byte once."""
    raw = zstandard.ZstdCompressor().compress(DATA)
    reads, error = read_all(raw, size)
    assert error is None and b"".join(reads) == DATA
