"""The L1 CSV output (SPEC §2, §9, §11): header, rows, truncation back to a checkpoint."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from l3tol1.core.l1 import L1Formatter, csv_header
from l3tol1.core.plain import PlainReader
from l3tol1.core.records import Quote
from l3tol1.errors import ConfigError
from l3tol1.sinks.files import FileRecord, OutputFile, check_record

__all__ = ["CsvSink", "CsvState"]


@dataclass(frozen=True, slots=True)
class CsvState:
    """A CSV output at a checkpoint: the file, how many rows it holds, and whether they have an
    instrument column (None: the header is not written yet)."""

    file: FileRecord
    rows: int
    instrument: bool | None = None

    kind = "csv"

    def to_plain(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "file": self.file.to_plain(),
            "rows": self.rows,
            "instrument": self.instrument,
        }

    @classmethod
    def from_plain(cls, obj: Any, where: str, read: PlainReader) -> CsvState:
        """The state `to_plain` gave, checked.

        :raises PlainDataError: a value is missing or of the wrong type.
        """
        return cls(
            FileRecord.from_plain(read.get(obj, "file", where), f"{where}.file", read),
            read.integer(obj, "rows", where),
            read.boolean(obj, "instrument", where, null=True),
        )


class CsvSink:
    """Writes L1 quotes as CSV lines to a file (or a pipe or device).

    Its header waits for `set_layout`: whether the rows have an ``instrument`` column is known
    once the input's header is (SPEC §9).
    """

    cut_aligned = False  # rows are durable at any flush: checkpoints go at any batch

    def __init__(
        self,
        path: Path,
        *,
        formatter: Callable[..., Any] = L1Formatter,
        header: Callable[[bool], str] = csv_header,
    ) -> None:
        self.path = path
        self.file = OutputFile(path, "output")
        self.rows = 0
        self.instrument: bool | None = None
        self._new_formatter = formatter  # the core's L1Formatter, or a schema's RowFormatter
        self._header = header
        self._formatter = formatter()
        self._parts: list[str] = []
        self._buffered = 0

    def use_format(self, formatter: Callable[..., Any], header: Callable[[bool], str]) -> None:
        """Format rows with these instead (another schema's): before any row and header
        (`collect` learns the feed's schema once connected)."""
        assert self.instrument is None and not self._parts
        self._new_formatter, self._header = formatter, header
        self._formatter = formatter()

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

    def discard(self) -> None:
        """The run never began: remove the file if `open` created it; close it."""
        self.file.discard()

    async def start(self, resume: CsvState | None) -> None:
        """Cut the file back to the checkpoint's size, or empty it."""
        self.file.start(None if resume is None else resume.file.size)
        if resume is not None:
            self.rows = resume.rows
            if resume.instrument is not None:
                self.set_layout(resume.instrument, False)

    def set_layout(self, instrument: bool, nanoseconds: bool) -> None:
        """Whether the rows have an ``instrument`` column; the header follows.

        :raises ConfigError: the file already holds rows of the other layout.
        """
        if self.instrument is None:
            self.instrument = instrument
            self._formatter = self._new_formatter(with_instrument=instrument)
            if self.file.size == 0:
                self._parts.insert(0, self._header(instrument))
        elif self.instrument != instrument:
            having = "has" if self.instrument else "has no"
            raise ConfigError(
                f"output {self.path} {having} an instrument column, but the input now"
                f" {'has' if instrument else 'has none'}: one output holds one layout"
            )

    def add(self, quotes: Sequence[Quote]) -> None:
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
        return CsvState(self.file.record(), self.rows, self.instrument)

    def deadline(self) -> float | None:
        """Rows are flushed by the writer's policy, not by parts: no deadline of its own."""
        return None

    def part_due(self, now: float) -> bool:
        """A CSV file has no parts."""
        return False

    async def close_parts(self, *, all_rows: bool) -> None:
        """A CSV file has no parts: nothing to close."""

    async def commit(self) -> None:
        """Rows are visible once written: nothing to commit."""

    async def aclose(self) -> None:
        """Close the file; safe to call twice."""
        self.file.close()
