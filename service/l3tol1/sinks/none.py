"""No L1 output: the sink of a run that writes no rows (`l3tol1 publish`: its rows are the
workers', SPEC §13). Everything is accepted and nothing kept; a checkpoint records no output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from l3tol1.core.records import Quote

__all__ = ["NoOutput"]


class NoOutput:
    """The `Sink` that writes nothing."""

    rows = 0
    cut_aligned = False
    buffered = 0

    def open(self) -> None: ...
    def discard(self) -> None: ...
    async def start(self, resume: Any | None) -> None: ...
    def set_layout(self, instrument: bool, nanoseconds: bool) -> None: ...
    def add(self, quotes: list[Quote]) -> None: ...
    async def flush(self, *, sync: bool) -> None: ...
    def deadline(self) -> float | None:
        return None

    def part_due(self, now: float) -> bool:
        return False

    async def close_parts(self, *, all_rows: bool) -> None: ...
    async def commit(self) -> None: ...
    def state(self) -> None:
        return None

    def check_resume(self, resume: Any, checkpoint: Path) -> None: ...
    async def aclose(self) -> None: ...
