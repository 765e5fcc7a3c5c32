"""What Python sees of the compiled core (core/_compiled.pyx, assembling core/cy/*.pyx).

The classes have the Python core's interfaces (core/protocols.py; mypy checks them through this
stub in `compiled_core`), over C arrays: events and quotes travel in an `EventBatch` and a
`QuoteBatch`, whose records name their instrument by an index into one `InstrumentTable` shared
by every object of a `Core`; each class that needs it takes that table first.
tests/test_core_protocols.py checks this stub against the built module (mypy's stubtest).
"""

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import Final

from typing_extensions import disjoint_base

from l3tol1.core.book import OrderBook
from l3tol1.core.feed import FeedState
from l3tol1.core.instruments import Bbo, InstrumentsState
from l3tol1.core.mbo import MboMetadata
from l3tol1.core.naming import MboNamer
from l3tol1.core.records import Event, Quote, Reject
from l3tol1.core.schemas import DepthBook, DepthsState, Row, Schema
from l3tol1.core.wire import Packed

__all__ = [
    "IMPLEMENTATION",
    "CsvParser",
    "DayNames",
    "Depths",
    "EventBatch",
    "Feed",
    "InstrumentTable",
    "Instruments",
    "L1Formatter",
    "MboParser",
    "QuoteBatch",
    "RowBatch",
    "RowFormatter",
    "compiled_values",
    "instrument_days",
    "pack_events",
    "pack_quotes",
    "unpack_events",
    "unpack_quotes",
]

IMPLEMENTATION: Final[str]

def compiled_values() -> dict[str, object]:
    """The values shared with the Python core, as compiled (see core/constants.py)."""

@disjoint_base
class InstrumentTable:
    """Every instrument name met, interned; index 0 is ""."""

    names: list[str]
    def __init__(self) -> None: ...
    def index(self, name: str) -> int:
        """The index of ``name``, interned if new.

        :raises UnicodeEncodeError: ``name`` holds a lone surrogate.
        """

@disjoint_base
class EventBatch:
    """Events in a C array (`Core.events`)."""

    def __init__(self, table: InstrumentTable, events: Iterable[Event] = ()) -> None: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[Event]: ...
    def __getitem__(self, i: int, /) -> Event: ...
    def extend(self, events: Iterable[Event]) -> None: ...

@disjoint_base
class QuoteBatch:
    """L1 quotes in a C array (`Core.quotes`)."""

    def __init__(self, table: InstrumentTable) -> None: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[Quote]: ...
    def rename(self, name: Callable[[str, int], str], memo: DayNames | None = None) -> DayNames:
        """Name each quote by ``name(instrument, time)`` (Databento's rows, SPEC §12), asked
        once per instrument and day while the memo returned is passed back."""

@disjoint_base
class DayNames:
    """`QuoteBatch.rename`'s memo: the name of each book's rows on each day."""

    def __init__(self, table: InstrumentTable) -> None: ...

@disjoint_base
class RowBatch:
    """A schema's rows in a C array (`Core.rows`)."""

    depth: int
    def __init__(self, table: InstrumentTable) -> None: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[Row]: ...
    def __getitem__(self, i: int, /) -> Row: ...

@disjoint_base
class CsvParser:
    instrument_column: str | None
    def __init__(
        self,
        table: InstrumentTable,
        header: str,
        *,
        instrument_column: str | None = None,
        max_line: int | None = None,
        ns_times: bool = False,
    ) -> None: ...
    def parse_row(self, text: str, line: int) -> Event | Reject: ...
    def parse(self, data: bytes, first_line: int) -> tuple[EventBatch, list[Reject]]: ...

@disjoint_base
class MboParser:
    metadata: MboMetadata
    errors: list[tuple[int, str]]
    def __init__(self, table: InstrumentTable, metadata: MboMetadata, namer: MboNamer) -> None: ...
    @property
    def by_action(self) -> dict[str, int]: ...
    @property
    def by_type(self) -> dict[str, int]: ...
    def parse(self, data: bytes, first_record: int) -> tuple[EventBatch, list[Reject]]: ...

@disjoint_base
class Feed:
    max_pending: int
    gap_timeout: float | None
    skipped: list[tuple[int, int]]
    received: int
    late: int
    duplicate: int
    gaps_skipped: int
    seqs_lost: int
    def __init__(
        self,
        table: InstrumentTable,
        *,
        start_seq: int | None = None,
        max_pending: int = 100_000,
        gap_timeout: float | None = None,
    ) -> None: ...
    @property
    def pending(self) -> int: ...
    @property
    def arrivals(self) -> int: ...
    @property
    def next_seq(self) -> int | None: ...
    @property
    def first_seq(self) -> int | None: ...
    def push(
        self, events: EventBatch, now: float, ready: EventBatch, rejects: list[Reject]
    ) -> None: ...
    def expire(self, now: float, ready: EventBatch) -> None: ...
    def deadline(self) -> float | None: ...
    def finish(self, ready: EventBatch) -> None: ...
    def snapshot(self) -> FeedState: ...
    def restore(self, state: FeedState, now: float) -> None: ...

@disjoint_base
class Instruments:
    keep: frozenset[str] | None
    kept: Collection[str]
    applied: int
    skipped: int
    crossed: int
    locked: int
    last_seq: int | None
    def __init__(
        self,
        table: InstrumentTable,
        keep: Collection[str] | None = None,
        *,
        kept: Collection[str] | None = None,
    ) -> None: ...
    @property
    def anomalies(self) -> dict[str, int]: ...
    def __len__(self) -> int: ...
    def names(self) -> frozenset[str]: ...
    def apply(
        self, events: EventBatch, quotes: QuoteBatch, anomalies: list[tuple[str, Event]]
    ) -> None: ...
    def book(self, name: str = "") -> OrderBook: ...
    def heap_sizes(self, name: str = "") -> tuple[int, int]: ...
    def last_quote(self, name: str = "") -> Bbo | None: ...
    def snapshot(self) -> InstrumentsState: ...
    def restore(self, state: InstrumentsState) -> None: ...

@disjoint_base
class L1Formatter:
    with_instrument: bool
    def __init__(self, *, with_instrument: bool = False) -> None: ...
    def format(self, quotes: QuoteBatch) -> str: ...

@disjoint_base
class Depths:
    schema: Schema
    keep: frozenset[str] | None
    kept: Collection[str]
    name: Callable[[str, int], str] | None
    applied: int
    skipped: int
    crossed: int
    locked: int
    gaps: int
    last_seq: int | None
    def __init__(
        self,
        table: InstrumentTable,
        schema: Schema,
        keep: Collection[str] | None = None,
        *,
        kept: Collection[str] | None = None,
        name: Callable[[str, int], str] | None = None,
    ) -> None: ...
    @property
    def anomalies(self) -> dict[str, int]: ...
    @property
    def interval(self) -> int | None: ...
    def __len__(self) -> int: ...
    def names(self) -> frozenset[str]: ...
    def book(self, name: str = "") -> DepthBook: ...
    def mark_gap(self) -> None: ...
    def apply(
        self,
        events: EventBatch,
        rows: RowBatch,
        anomalies: list[tuple[str, Event]],
        gaps: Collection[int] = (),
    ) -> None: ...
    def finish(self, rows: RowBatch) -> None: ...
    def snapshot(self) -> DepthsState: ...
    def restore(self, state: DepthsState) -> None: ...

@disjoint_base
class RowFormatter:
    schema: Schema
    with_instrument: bool
    def __init__(self, schema: Schema, *, with_instrument: bool = False) -> None: ...
    def header(self) -> str: ...
    def format(self, rows: RowBatch | Iterable[Row]) -> str: ...

def pack_events(
    events: EventBatch,
    partitions: int,
    last_seq: Sequence[int],
    max_body: int,
    *,
    by_line: bool = False,
) -> tuple[list[Packed], int]: ...
def instrument_days(events: EventBatch) -> set[tuple[str, int]]: ...
def unpack_events(table: InstrumentTable, body: bytes) -> EventBatch:
    """:raises ValueError: the body is not a batch of events."""

def pack_quotes(quotes: QuoteBatch, max_body: int) -> list[bytes]: ...
def unpack_quotes(table: InstrumentTable, body: bytes) -> QuoteBatch:
    """:raises ValueError: the body is not a batch of quotes."""
