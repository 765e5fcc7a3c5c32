"""What every output gives the pipeline: buffered quotes, flushes, and a resumable state.

    write stage ──quotes──▶ Sink (CSV file, Parquet dataset)
                ──rejects─▶ RejectSink (JSON lines)

A sink is opened (checked and locked, nothing changed) before the run, started (cut back to the
checkpoint's state, or emptied) once every check has passed, told its layout once the input's
header is known, then fed batches. Its `state` after a synced flush (and `close_part`) is its
piece of the checkpoint, and `start` with that state resumes exactly there: a CSV file is
truncated back, a Parquet dataset drops the parts written after it.

A CSV file's rows are durable at any flush, so a checkpoint can be cut at any batch. A Parquet
part is durable only whole: such a sink is ``cut_aligned``, its parts close at checkpoint cuts
(and `commit` makes them visible once the checkpoint that names them is saved).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from l3tol1.core.plain import PlainReader
from l3tol1.core.records import Quote
from l3tol1.sinks.csv import CsvState
from l3tol1.sinks.parquet import ParquetState

__all__ = ["OutputState", "Sink", "output_state_from_plain"]

# What a checkpoint records of the L1 output, by its kind
OutputState = CsvState | ParquetState
_STATES: dict[str, type[CsvState] | type[ParquetState]] = {
    CsvState.kind: CsvState,
    ParquetState.kind: ParquetState,
}


def output_state_from_plain(obj: Any, where: str, read: PlainReader) -> OutputState:
    """An output's state from its ``to_plain`` (tagged with its ``kind``), checked.

    :raises PlainDataError: an unknown kind, or a value missing or of the wrong type.
    """
    kind = read.get(obj, "kind", where)
    state = _STATES.get(kind) if isinstance(kind, str) else None
    if state is None:
        read.fail(f"{where}.kind", f"not one of {', '.join(sorted(_STATES))}")
    assert state is not None
    return state.from_plain(obj, where, read)


class Sink(Protocol):
    """An output of L1 quotes."""

    rows: int  # quotes flushed so far (kept from the checkpoint included)
    cut_aligned: bool  # with a checkpoint, rows become durable only at cuts (parts)

    @property
    def buffered(self) -> int:
        """Quotes added and not flushed yet."""
        ...

    def open(self) -> None:
        """Check and open the output, and lock it; change nothing in it.

        :raises ConfigError: it cannot be used (a directory, no permission, locked).
        """
        ...

    def discard(self) -> None:
        """The run failed before it began (`start` was not called): remove what `open`
        created, leave what was there before as it was; release the output."""
        ...

    async def start(self, resume: Any | None) -> None:
        """Begin writing: from empty, or from ``resume``, a `state` this sink returned before.

        :raises ConfigError: the output no longer holds what ``resume`` claims.
        """
        ...

    def set_layout(self, instrument: bool, nanoseconds: bool) -> None:
        """The rows' columns: an instrument column or not, times in µs or ns (SPEC §9, §11).

        :raises ConfigError: the output already holds rows of another layout.
        """
        ...

    def add(self, quotes: list[Quote]) -> None:
        """Buffer quotes, in order."""
        ...

    async def flush(self, *, sync: bool) -> None:
        """Write what is buffered; with ``sync``, make everything written durable (a part-based
        sink writes its full row groups; its rows are durable when the part closes).

        :raises OutputError: the write or sync failed.
        """
        ...

    def deadline(self) -> float | None:
        """When the sink wants its current part closed by age, if it has parts."""
        ...

    def part_due(self, now: float) -> bool:
        """Whether the current part should close now (full, or old enough)."""
        ...

    async def close_parts(self, *, all_rows: bool) -> None:
        """Close every full part, and with ``all_rows`` a last one of the rows left: durable,
        not yet visible (nothing for a CSV file)."""
        ...

    async def commit(self) -> None:
        """Make the parts closed so far visible (after the checkpoint that names them)."""
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
