"""Bytes to whole lines, with a bound on how much of one line is ever held (SPEC §4, §7).

`LineSplitter` is pure: chunks of bytes in, blocks of whole lines out. A partial last line is
kept until its newline arrives; a line that grows past ``max_line`` bytes is rejected as
`line too long` at once and the rest of it skipped, so memory stays bounded whatever the input.
Shorter lines inside a block are left whole: the parser applies the same rule to them, in bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from l3tol1.core.csv_parser import MAX_LINE, too_long_reject
from l3tol1.core.records import Reject

__all__ = ["HeaderTooLong", "LineSplitter", "Lines", "newlines", "take_header"]


@dataclass(slots=True)
class Lines:
    """Whole lines from one input, numbered from ``first_line``; each ends in a newline."""

    data: bytes = b""
    first_line: int = 1
    rejects: list[Reject] = field(default_factory=list)  # lines too long to hold


class LineSplitter:
    """Splits one input's bytes into whole lines, counting lines and consumed bytes.

    ``offset`` is the number of bytes consumed through the last whole line handed out (or
    skipped), ``line`` the number of that line: together, where a restart can pick up.
    """

    __slots__ = ("_partial", "_skipping", "line", "max_line", "offset")

    def __init__(self, *, offset: int = 0, line: int = 0, max_line: int = MAX_LINE) -> None:
        self.offset = offset
        self.line = line
        self.max_line = max_line
        self._partial = b""  # bytes after the last newline
        self._skipping = False  # inside a line already rejected as too long

    @property
    def buffered(self) -> int:
        """Bytes held of a line whose newline has not come yet."""
        return len(self._partial)

    def feed(self, chunk: bytes) -> Lines:
        """The whole lines that ``chunk`` completes; the partial tail is kept for later."""
        out = Lines(first_line=self.line + 1)
        start = 0  # where the bytes of this chunk not skipped begin
        if self._skipping:
            start = chunk.find(b"\n") + 1
            if not start:
                self.offset += len(chunk)
                return out
            self._skipping = False
            self.offset += start
        partial = self._partial
        cut = chunk.rfind(b"\n", start)
        if cut >= 0:
            # The whole lines in one copy at most (none when the chunk is whole lines): the
            # held partial line, then this chunk's bytes up to its last newline, unsliced.
            if partial or start or cut + 1 < len(chunk):
                out.data = b"".join((partial, memoryview(chunk)[start : cut + 1]))
            else:
                out.data = chunk
            self._partial = chunk[cut + 1 :]
            self.offset += len(out.data)
            # the held partial line has no newline, nor the chunk after ``cut``; before
            # ``start`` only the newline that ended the skipped line
            self.line += newlines(chunk) - (start > 0)
        else:
            self._partial = partial + chunk[start:]
        if len(self._partial) > self.max_line:
            self.line += 1
            out.rejects.append(too_long_reject(self.line, self._partial, self.max_line))
            self.offset += len(self._partial)
            self._partial = b""
            self._skipping = True
        return out

    def skip_through(self, lines: Lines, line: int) -> Lines:
        """``lines`` without the lines numbered up to ``line`` (read before a restart)."""
        if lines.first_line > line:
            return lines
        rejects = [r for r in lines.rejects if r.line > line]
        last = lines.first_line + lines.data.count(b"\n") - 1
        if last <= line:
            return Lines(b"", line + 1, rejects)
        cut = -1
        for _ in range(line - lines.first_line + 1):
            cut = lines.data.index(b"\n", cut + 1)
        return Lines(lines.data[cut + 1 :], line + 1, rejects)

    def finish(self) -> Lines:
        """The end of the input: a last line without its newline still counts."""
        if self._skipping or not self._partial:
            self._skipping = False
            return Lines(first_line=self.line + 1)
        partial, self._partial = self._partial, b""
        self.line += 1
        self.offset += len(partial)
        return Lines(partial + b"\n", self.line)


def newlines(data: bytes) -> int:
    """How many newlines ``data`` holds. CPython 3.11's ``bytes.count`` of one byte is a loop
    over every byte; ``replace`` finds each newline with memchr, several times faster even
    with the copy it makes."""
    return len(data) - len(data.replace(b"\n", b""))


def take_header(lines: Lines) -> tuple[bytes | None, Lines]:
    """Split a file's first line off its first lines: (header bytes, the lines after it).

    The header is None when ``lines`` holds no line yet; a first line too long to hold comes
    back as its reject, for the caller to refuse."""
    if lines.rejects and lines.rejects[0].line == lines.first_line:
        raise HeaderTooLong(lines.rejects[0].line)
    if not lines.data:
        return None, lines
    cut = lines.data.index(b"\n")
    rest = Lines(lines.data[cut + 1 :], lines.first_line + 1, lines.rejects)
    return lines.data[:cut].removesuffix(b"\r"), rest


class HeaderTooLong(ValueError):
    """The first line of a file is longer than the line limit."""
