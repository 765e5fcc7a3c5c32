"""What a person at a terminal sees: a progress bar while converting a file, and a summary table.

Both draw on stderr through rich, and only when stderr is a terminal (the CLI decides); a piped
or logged run gets the JSON log lines alone.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

__all__ = ["ProgressBar", "print_summary"]


class ProgressBar:
    """Bytes read of the input's size, events/s and time left, redrawn in place."""

    def __init__(self, total_bytes: int | None, stream: Any = None) -> None:
        self._progress = Progress(
            TextColumn("[bold]l3tol1"),
            BarColumn(),
            DownloadColumn(),
            TextColumn("{task.fields[rate]:>12} events/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=_console(stream),
            refresh_per_second=10,
        )
        self._task = self._progress.add_task("convert", total=total_bytes, rate="-")

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()

    def update(self, bytes_read: int, events: int, elapsed: float) -> None:
        """Show progress so far."""
        rate = f"{events / elapsed:,.0f}" if elapsed > 0 else "-"
        self._progress.update(self._task, completed=bytes_read, rate=rate)


def _console(stream: TextIO | None) -> Console:
    """A console on ``stream`` (a SafeStream over stderr), or on stderr itself."""
    return Console(file=stream) if stream is not None else Console(stderr=True)


def print_summary(counters: dict[str, Any], elapsed: float, stream: Any = None) -> None:
    """The run's figures as a small table on stderr."""
    table = Table(title="l3tol1 summary", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    table.add_row("events read", f"{counters['events_read']:,}")
    table.add_row("events applied", f"{counters['events_applied']:,}")
    table.add_row("L1 rows written", f"{counters['rows_written']:,}")
    if counters.get("instruments", 0) > 1:
        table.add_row("instruments", f"{counters['instruments']:,}")
    if counters.get("instruments_not_seen"):
        table.add_row("--instruments not seen", ", ".join(counters["instruments_not_seen"]))
    for reason, count in sorted(counters["rejects"].items()):
        table.add_row(f"rejected: {reason}", f"{count:,}")
    if not counters["rejects"]:
        table.add_row("rejected", "0")
    for action, count in sorted(counters.get("records_by_action", {}).items()):
        table.add_row(f"MBO records: {action}", f"{count:,}")
    for kind, count in sorted(counters.get("records_by_type", {}).items()):
        table.add_row(f"DBN records: {kind}", f"{count:,}")
    if counters.get("crossed_quotes") or counters.get("locked_quotes"):
        crossed, locked = counters["crossed_quotes"], counters["locked_quotes"]
        table.add_row("crossed / locked rows", f"{crossed:,} / {locked:,}")
    for kind, count in sorted(counters["anomalies"].items()):
        table.add_row(f"anomaly: {kind}", f"{count:,}")
    table.add_row("gaps skipped", f"{counters['gaps_skipped']:,} ({counters['seqs_lost']:,} seqs)")
    table.add_row("time", f"{elapsed:.2f} s")
    rate = counters["events_applied"] / elapsed if elapsed > 0 else 0
    table.add_row("rate", f"{rate:,.0f} events/s")
    _console(stream).print(table)
