"""The followed file's source in process (sources/file.py, SPEC §7): a missing input said again less
and less often, and a read error that ends the input after the lines read. The same input
through the real CLI is system/test_damaged_input.py's."""

from __future__ import annotations

import contextlib
from itertools import pairwise
from pathlib import Path

import pytest

from tests.conftest import book_rows, whole_lines, write_l3


def test_the_wait_is_said_again_less_and_less_often(tmp_path: Path) -> None:
    """Still missing, the input is logged again after ``waiting_note`` seconds, then after
    twice that, and so on (never one line per poll)."""
    import anyio
    from structlog.testing import capture_logs

    from l3tol1.sources.file import FileSource

    source = FileSource(tmp_path / "later.csv", follow=True, poll_interval=0.005, waiting_note=0.2)

    async def read() -> None:
        async with contextlib.aclosing(source.chunks()) as chunks:
            async for _ in chunks:
                raise AssertionError("nothing to read")

    async def wait_for_notes(logs: list[dict]) -> list[float]:
        async with anyio.create_task_group() as group:
            group.start_soon(read)
            with anyio.fail_after(20):
                while len(notes := [r for r in logs if r["event"] == "waiting_for_input"]) < 4:
                    await anyio.sleep(0.01)
            group.cancel_scope.cancel()
        await source.aclose()
        return [note["waited_s"] for note in notes]

    with capture_logs() as logs:
        waited = anyio.run(wait_for_notes, logs)
    assert waited[0] == 0
    gaps = [b - a for a, b in pairwise(waited)]
    assert all(later >= 1.5 * earlier for earlier, later in pairwise(gaps))


@pytest.mark.parametrize("direct", [True, False], ids=["regular-file", "thread"])
def test_a_read_error_ends_the_input_after_the_lines_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, direct: bool
) -> None:
    """A read that fails (EIO from a failing disk) mid-file ends the input: the chunks before
    it, then one that carries the error, naming the line it comes after and the bytes of the
    next one already read (not converted); never an exception through the pipeline. Whether
    the file is read in the loop (a regular file) or through aiofiles' thread."""
    import errno
    import os

    import anyio

    from l3tol1.sources.file import FileSource

    src = write_l3(tmp_path / "l3.csv", book_rows(1, 50))
    source = FileSource(src, follow=False, chunk_size=300)
    read_bytes = os.read

    def fail() -> None:
        raise OSError(errno.EIO, "Input/output error")

    async def failing(size: int) -> bytes:
        fail()
        return b""

    def failing_os_read(fd: int, size: int) -> bytes:
        if fd == source._file.fileno():
            fail()
        return read_bytes(fd, size)

    async def read() -> list:
        await source.open()
        assert source._direct
        source._direct = direct
        chunks = []
        async with contextlib.aclosing(source.chunks()) as reading:
            async for chunk in reading:
                chunks.append(chunk)
                if len(chunks) == 2:  # the disk fails from the third read on
                    if direct:
                        monkeypatch.setattr(os, "read", failing_os_read)
                    else:
                        source._file.read = failing
        await source.aclose()
        return chunks

    chunks = anyio.run(read)
    *good, last = chunks
    lines = sum(chunk.data.count(b"\n") for chunk in good) + 1  # and the header
    assert len(good) == 2 and last.end_of_input and not last.data
    assert last.position == good[-1].position and last.first_line == lines + 1
    partial = 600 - len(whole_lines(src.read_bytes()[:600]))
    assert str(last.damage) == (
        f"cannot read input {src} after line {lines}: Input/output error; the {partial} bytes"
        f" of line {lines + 1} read before it are not converted"
    )
