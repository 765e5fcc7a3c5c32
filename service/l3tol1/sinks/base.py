"""What every output gives the pipeline: buffered quotes, flushes, and a resumable state.

    write stage ──quotes──▶ Sink (CSV file, Parquet dataset)
                ──rejects─▶ RejectSink (JSON lines)

A sink is opened (checked and locked, nothing changed) before the run, started (cut back to the
checkpoint's state, or emptied) once every check has passed, then fed batches. Its `state` after
a synced flush is its piece of the checkpoint, and `start` with that state resumes exactly there:
a CSV file is truncated back, a Parquet dataset drops the parts written after it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from l3tol1.core.records import Quote

__all__ = ["Sink"]


class Sink(Protocol):
    """An output of L1 quotes."""

    rows: int  # quotes flushed so far (kept from the checkpoint included)

    @property
    def buffered(self) -> int:
        """Quotes added and not flushed yet."""
        ...

    def open(self) -> None:
        """Check and open the output, and lock it; change nothing in it.

        :raises ConfigError: it cannot be used (a directory, no permission, locked).
        """
        ...

    async def start(self, resume: Any | None) -> None:
        """Begin writing: from empty, or from ``resume``, a `state` this sink returned before.

        :raises ConfigError: the output no longer holds what ``resume`` claims.
        """
        ...

    def add(self, quotes: list[Quote]) -> None:
        """Buffer quotes, in order."""
        ...

    async def flush(self, *, sync: bool) -> None:
        """Write what is buffered; with ``sync``, make everything written durable.

        :raises OutputError: the write or sync failed.
        """
        ...

    def state(self) -> Any:
        """What a checkpoint records of this sink (valid after a synced flush)."""
        ...

    def check_resume(self, resume: Any, checkpoint: Path) -> None:
        """Refuse ``resume`` if it belongs to another output (before anything is started).

        :raises CheckpointError: naming both.
        """
        ...

    async def aclose(self) -> None:
        """Release the output (without flushing: flush first); safe to call twice."""
        ...
