"""The correctness of l3tol1: pure, synchronous, no I/O, no third-party imports.

    records      Event, Reject, Quote and the closed sets of names (actions, reasons, anomalies)
    numbers      every numeric field's bounds, parsing and formatting
    csv_parser   L3 CSV rows to events and rejects (SPEC §1, §4, §9)
    mbo          Databento MBO records (DBN or CSV) to events (SPEC §12)
    feed         one input's events back in seq order (SPEC §5)
    book         one instrument's orders and price levels
    instruments  events applied to the books, and the write rule (SPEC §2, §3, §9)
    l1           quotes as L1 CSV text (SPEC §2)
    wire         batches of events and quotes as message bodies (SPEC §13)
    _compiled    the same classes over whole batches in C (Cython), when it was built

The pipeline gets its classes from a `Core` (`load`): the pure-Python modules, the reference,
or the compiled ones, which give the same results faster. Events and quotes travel between the
stages in the core's own containers (`Core.events`, `Core.quotes`): lists of records here,
C arrays in the compiled core.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from l3tol1.core.csv_parser import CsvParser
from l3tol1.core.feed import Feed
from l3tol1.core.instruments import Instruments
from l3tol1.core.l1 import L1Formatter
from l3tol1.core.mbo import MboMetadata, MboNamer, MboParser
from l3tol1.core.records import Event, Quote
from l3tol1.core.wire import (
    Packed,
    instrument_days,
    pack_events,
    pack_quotes,
    unpack_events,
    unpack_quotes,
)

__all__ = ["CORES", "PythonCore", "available", "load"]

CORES = ("auto", "compiled", "python")


class PythonCore:
    """The pure-Python core: the reference, and the fallback where nothing was compiled."""

    name = "python"

    def csv_parser(
        self, header: str, *, instrument_column: str | None = None, max_line: int | None = None
    ) -> CsvParser:
        kwargs = {} if max_line is None else {"max_line": max_line}
        return CsvParser(header, instrument_column=instrument_column, **kwargs)

    def mbo_parser(self, metadata: MboMetadata, namer: MboNamer) -> MboParser:
        return MboParser(metadata, namer)

    def feed(self, **kwargs: Any) -> Feed:
        return Feed(**kwargs)

    def instruments(
        self, keep: Collection[str] | None = None, *, kept: Collection[str] | None = None
    ) -> Instruments:
        return Instruments(keep, kept=kept)

    def formatter(self, *, with_instrument: bool = False) -> L1Formatter:
        return L1Formatter(with_instrument=with_instrument)

    def events(self, events: Iterable[Event] = ()) -> list[Event]:
        return list(events)

    def quotes(self) -> list[Quote]:
        return []

    def pack_events(
        self,
        events: Iterable[Event],
        partitions: int,
        last_seq: list[int],
        max_body: int,
        *,
        by_line: bool = False,
    ) -> tuple[list[Packed], int]:
        return pack_events(events, partitions, last_seq, max_body, by_line=by_line)

    def instrument_days(self, events: Iterable[Event]) -> set[tuple[str, int]]:
        return instrument_days(events)

    def unpack_events(self, body: bytes) -> list[Event]:
        return unpack_events(body)

    def pack_quotes(self, quotes: Iterable[Quote], max_body: int) -> list[bytes]:
        return pack_quotes(quotes, max_body)

    def unpack_quotes(self, body: bytes) -> list[Quote]:
        return unpack_quotes(body)


def available() -> bool:
    """Whether the compiled core was built (and loads)."""
    try:
        import l3tol1.core._compiled  # noqa: F401
    except ImportError:
        return False
    return True


def load(name: str = "auto") -> Any:
    """The core to run with: "compiled", "python", or "auto" (compiled when it was built).

    :raises ImportError: "compiled" was asked for and was not built.
    """
    if name == "python" or (name == "auto" and not available()):
        return PythonCore()
    from l3tol1.core._compiled import Core

    return Core()
