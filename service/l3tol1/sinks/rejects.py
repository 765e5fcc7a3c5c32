"""The reject file (SPEC §4): one JSON object per rejected row, in input order."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from l3tol1.core.plain import PlainReader
from l3tol1.core.records import Reject
from l3tol1.sinks.files import FileRecord, OutputFile, check_record

__all__ = ["RejectSink", "RejectsState"]


@dataclass(frozen=True, slots=True)
class RejectsState:
    """The reject file at a checkpoint: the file and its counts by reason."""

    file: FileRecord
    by_reason: dict[str, int] = field(default_factory=dict)

    def to_plain(self) -> dict[str, Any]:
        return {"file": self.file.to_plain(), "by_reason": self.by_reason}

    @classmethod
    def from_plain(cls, obj: Any, where: str, read: PlainReader) -> RejectsState:
        """The state `to_plain` gave, checked.

        :raises PlainDataError: a value is missing or of the wrong type.
        """
        return cls(
            FileRecord.from_plain(read.get(obj, "file", where), f"{where}.file", read),
            read.counts(obj, "by_reason", where),
        )


# Characters that JSON leaves as they are but that some readers take as line ends (Python's
# str.splitlines, JavaScript's line terminators): escaped, so each record stays one line.
_LINE_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


class RejectSink:
    """Appends reject records as JSON lines and counts them by reason."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = OutputFile(path, "reject file")
        self.by_reason: dict[str, int] = {}
        self._lines: list[str] = []

    @property
    def buffered(self) -> int:
        """Records not written yet."""
        return len(self._lines)

    def check_resume(self, resume: RejectsState, checkpoint: Path) -> None:
        """Refuse a checkpoint of another reject file, or of this one changed behind its back."""
        check_record(resume.file, self.path, "reject file", checkpoint)

    def open(self) -> None:
        """Open and lock the file, changing nothing in it."""
        self.file.open()

    def discard(self) -> None:
        """The run never began: remove the file if `open` created it; close it."""
        self.file.discard()

    async def start(self, resume: RejectsState | None) -> None:
        """Cut the file back to the checkpoint's size, or empty it."""
        self.file.start(None if resume is None else resume.file.size)
        if resume is not None:
            self.by_reason = dict(resume.by_reason)

    def add(self, rejects: list[Reject]) -> None:
        """Count and format rejects; they are written by the next `flush`."""
        by_reason = self.by_reason
        for line, reason, raw in rejects:
            by_reason[reason] = by_reason.get(reason, 0) + 1
            record = {"line": line, "reason": str(reason), "raw": raw}
            text = json.dumps(record, ensure_ascii=False)
            if not text.isascii():  # keep one record a line for every line splitter
                text = text.translate(_LINE_BREAKS)
            self._lines.append(text + "\n")

    async def flush(self, *, sync: bool) -> None:
        """Write the formatted records; with ``sync``, fsync the file."""
        if self._lines:
            text = "".join(self._lines)
            self._lines.clear()
            await self.file.write(text.encode())
        if sync:
            await self.file.sync()

    def state(self) -> RejectsState:
        """The file and its counts now."""
        return RejectsState(self.file.record(), dict(self.by_reason))

    async def aclose(self) -> None:
        """Close the file; safe to call twice."""
        self.file.close()
