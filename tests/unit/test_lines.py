"""Bytes to whole lines (sources/lines.py): the splitter that copies at most once per chunk cuts
the same lines, with the same numbers, offsets and too-long rejects, as the plain one it replaced
(a join of the held partial line and each chunk, sliced at its last newline); a chunk of whole
lines goes on uncopied."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from l3tol1.core.csv_parser import too_long_reject
from l3tol1.sources.lines import Lines, LineSplitter, newlines


class PlainSplitter(LineSplitter):
    """The reference: every chunk joined to the partial line, then sliced (two copies)."""

    __slots__ = ()

    def feed(self, chunk: bytes) -> Lines:
        out = Lines(first_line=self.line + 1)
        if self._skipping:
            cut = chunk.find(b"\n")
            if cut < 0:
                self.offset += len(chunk)
                return out
            self._skipping = False
            self.offset += cut + 1
            chunk = chunk[cut + 1 :]
        data = self._partial + chunk
        cut = data.rfind(b"\n")
        if cut >= 0:
            out.data = data[: cut + 1]
            self._partial = data[cut + 1 :]
            self.offset += cut + 1
            self.line += out.data.count(b"\n")
        else:
            self._partial = data
        if len(self._partial) > self.max_line:
            self.line += 1
            out.rejects.append(too_long_reject(self.line, self._partial, self.max_line))
            self.offset += len(self._partial)
            self._partial = b""
            self._skipping = True
        return out


def blocks(splitter: LineSplitter, chunks: list[bytes]) -> list[tuple[Lines, int, int, int]]:
    """What each chunk (and the end) gives, and where the splitter stands after it."""
    out = []
    for chunk in [*chunks, None]:
        lines = splitter.feed(chunk) if chunk is not None else splitter.finish()
        out.append((lines, splitter.offset, splitter.line, splitter.buffered))
    return out


@settings(max_examples=400, deadline=None, derandomize=True)
@given(
    st.lists(st.sampled_from([b"a", b"bc", b"\n", b"x" * 20, b"\r\n", b"\n\n"]), max_size=40),
    st.lists(st.integers(1, 50), min_size=1, max_size=10),
)
def test_the_same_lines_as_the_plain_splitter(parts: list[bytes], sizes: list[int]) -> None:
    """Any input, cut into reads of any sizes, lines short and too long (max_line 16): the
    same blocks, line numbers, rejects and positions after every read."""
    whole = b"".join(parts)
    chunks, at = [], 0
    while at < len(whole):
        size = sizes[len(chunks) % len(sizes)]
        chunks.append(whole[at : at + size])
        at += size
    assert blocks(LineSplitter(max_line=16), chunks) == blocks(PlainSplitter(max_line=16), chunks)


def test_a_chunk_of_whole_lines_is_handed_on_as_it_is() -> None:
    """No copy when there is nothing to join or cut: the chunk read is the block of lines."""
    chunk = b"1,2\n3,4\n"
    splitter = LineSplitter()
    assert splitter.feed(chunk).data is chunk
    assert (splitter.offset, splitter.line, splitter.buffered) == (8, 2, 0)
    lines = splitter.feed(b"5,6\n7,")
    assert (lines.data, lines.first_line, splitter.buffered) == (b"5,6\n", 3, 2)
    lines = splitter.feed(b"8\n9")
    assert (lines.data, lines.first_line, splitter.offset) == (b"7,8\n", 4, 16)


@given(
    st.binary(max_size=300)
    | st.lists(st.sampled_from([b"\n", b"a\n", b"\r\n", b"xy"])).map(b"".join)
)
def test_newlines_are_counted_as_bytes_count_counts_them(data: bytes) -> None:
    assert newlines(data) == data.count(b"\n")
