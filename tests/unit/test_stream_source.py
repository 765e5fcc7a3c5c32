"""A stream read once (sources/stream.py), in process: a compressed file resumed."""

from __future__ import annotations

import gzip
from pathlib import Path

import anyio
import pytest

from l3tol1.sources.stream import StreamSource
from tests.conftest import HEADER, book_rows

pytestmark = pytest.mark.asyncio


async def test_a_resumed_stream_never_stands_before_its_checkpoint(tmp_path: Path) -> None:
    """Resumed, a compressed file is decompressed again from its start and the lines before the
    checkpoint's position are skipped: while it skips, its position is the checkpoint's, never
    one of the skipped lines (a checkpoint cut then, as a timer may cut one, would send a later
    restart back over lines that were applied)."""
    lines = [HEADER, *book_rows(1, 60_000)]
    data = "".join(line + "\n" for line in lines).encode()
    src = tmp_path / "l3.csv.gz"
    src.write_bytes(gzip.compress(data))
    line = 50_000  # resume after this line: far past the first chunks
    offset = len("".join(x + "\n" for x in lines[:line]).encode())
    source = StreamSource(src, resume=(offset, line))
    with anyio.fail_after(30):
        header = await source.open()
        assert header == HEADER
        assert (source.position.offset, source.position.line) == (offset, line)
        first = None
        async for chunk in source.chunks():
            assert chunk.position.line >= line
            if chunk.data and first is None:
                first = chunk.first_line
    await source.aclose()
    assert first == line + 1
