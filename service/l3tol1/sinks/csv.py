"""The L1 CSV output (SPEC §2, §9, §11): header, rows, truncation back to a checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from l3tol1.core.l1 import L1Formatter, csv_header
from l3tol1.core.records import Quote
from l3tol1.sinks.files import FileRecord, OutputFile, check_record

__all__ = ["CsvSink", "CsvState"]


@dataclass(frozen=True, slots=True)
class CsvState:
    """A CSV output at a checkpoint: the file and how many rows it holds."""

    file: FileRecord
    rows: int


class CsvSink:
    """Writes L1 quotes as CSV lines to a file (or a pipe or device).

    :param with_instrument: the feed has instruments: write the ``instrument`` column.
    """

    def __init__(self, path: Path, *, with_instrument: bool = False) -> None:
        self.path = path
        self.file = OutputFile(path, "output")
        self.rows = 0
        self._formatter = L1Formatter(with_instrument=with_instrument)
        self._header = csv_header(with_instrument)
        self._parts: list[str] = []
        self._buffered = 0

    @property
    def buffered(self) -> int:
        """Rows formatted and not written yet."""
        return self._buffered

    def check_resume(self, resume: CsvState, checkpoint: Path) -> None:
        """Refuse a checkpoint of another output, or of this one changed behind its back."""
        check_record(resume.file, self.path, "output", checkpoint)

    def open(self) -> None:
        """Open and lock the file, changing nothing in it."""
        self.file.open()

    async def start(self, resume: CsvState | None) -> None:
        """Cut the file back to the checkpoint's size, or empty it and write the header."""
        if resume is None:
            self.file.start(None)
            await self.file.write(self._header.encode())
        else:
            self.file.start(resume.file.size)
            self.rows = resume.rows

    def add(self, quotes: list[Quote]) -> None:
        """Format quotes; they are written by the next `flush`."""
        if quotes:
            self._parts.append(self._formatter.format(quotes))
            self._buffered += len(quotes)

    async def flush(self, *, sync: bool) -> None:
        """Write the formatted rows; with ``sync``, fsync the file."""
        if self._parts:
            text = "".join(self._parts)
            self._parts.clear()
            count, self._buffered = self._buffered, 0
            await self.file.write(text.encode())
            self.rows += count
        if sync:
            await self.file.sync()

    def state(self) -> CsvState:
        """The file and its row count now."""
        return CsvState(self.file.record(), self.rows)

    async def aclose(self) -> None:
        """Close the file; safe to call twice."""
        self.file.close()
