"""What the rest of the package may call on a core's objects, as `typing.Protocol`s.

Both cores satisfy them: the Python classes (core/*.py, the reference) and the compiled ones
(core/_compiled.pyi says what Python sees of them). They are written from what the pipeline, its
stages and the JetStream roles call, and what the tests read.

A core passes events and quotes between its objects in a container of its own: a list of
records in the Python core, a C array (`EventBatch`, `QuoteBatch`) in the compiled one. The
protocols are generic over that container type (``E`` for events, ``Q`` for quotes), so that a
core's objects are checked to take the containers the same core makes; what every container
offers is `Events` and `Quotes`.

The protocols are ``runtime_checkable``: ``isinstance(obj, Feed)`` checks that ``obj`` has every
member (the tests check each core's objects so), not the types of their arguments (mypy does).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import Protocol, TypeVar, runtime_checkable

from l3tol1.core.book import OrderBook
from l3tol1.core.feed import FeedState
from l3tol1.core.instruments import Bbo, InstrumentsState
from l3tol1.core.mbo import MboMetadata
from l3tol1.core.records import Event, Quote, Reject
from l3tol1.core.schemas import DepthBook, DepthsState, Row, Schema
from l3tol1.core.wire import Packed

__all__ = [
    "CsvParser",
    "CsvParserMaker",
    "Depths",
    "DepthsMaker",
    "Events",
    "EventsMaker",
    "Feed",
    "FeedMaker",
    "Formatter",
    "FormatterMaker",
    "Instruments",
    "InstrumentsMaker",
    "MboParser",
    "PackEvents",
    "Quotes",
    "RowFormatter",
    "RowFormatterMaker",
    "Rows",
]


@runtime_checkable
class Events(Protocol):
    """A core's container of events, in order (`Core.events`)."""

    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[Event]: ...
    def __getitem__(self, index: int, /) -> Event: ...


@runtime_checkable
class Quotes(Protocol):
    """A core's container of quotes, in order (`Core.quotes`)."""

    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[Quote]: ...


@runtime_checkable
class Rows(Protocol):
    """A core's container of a schema's rows, in order (`Core.rows`)."""

    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[Row]: ...


E_co = TypeVar("E_co", bound=Events, covariant=True)
E_contra = TypeVar("E_contra", bound=Events, contravariant=True)
Q_co = TypeVar("Q_co", bound=Quotes, covariant=True)
Q_contra = TypeVar("Q_contra", bound=Quotes, contravariant=True)
R_contra = TypeVar("R_contra", bound=Rows, contravariant=True)


@runtime_checkable
class CsvParser(Protocol[E_co]):
    """L3 CSV rows to events and rejects (core/csv_parser.py)."""

    @property
    def instrument_column(self) -> str | None: ...
    def parse(self, data: bytes, first_line: int, /) -> tuple[E_co, list[Reject]]: ...
    def parse_row(self, text: str, line: int, /) -> Event | Reject: ...


@runtime_checkable
class MboParser(Protocol[E_co]):
    """Databento's DBN records to events and rejects (core/mbo.py)."""

    @property
    def metadata(self) -> MboMetadata: ...
    @property
    def errors(self) -> list[tuple[int, str]]: ...  # cleared by the caller once logged
    @property
    def by_action(self) -> dict[str, int]: ...
    @property
    def by_type(self) -> dict[str, int]: ...
    def parse(self, data: bytes, first_record: int, /) -> tuple[E_co, list[Reject]]: ...


@runtime_checkable
class Feed(Protocol[E_contra]):
    """One input's events back in seq order (core/feed.py)."""

    received: int  # also counted by the caller for events that skip the feed (Databento's)
    skipped: list[tuple[int, int]]  # emptied by the caller once logged

    @property
    def late(self) -> int: ...
    @property
    def duplicate(self) -> int: ...
    @property
    def gaps_skipped(self) -> int: ...
    @property
    def seqs_lost(self) -> int: ...
    @property
    def next_seq(self) -> int | None: ...
    @property
    def first_seq(self) -> int | None: ...
    @property
    def pending(self) -> int: ...
    @property
    def arrivals(self) -> int: ...
    @property
    def max_pending(self) -> int: ...
    @property
    def gap_timeout(self) -> float | None: ...
    def push(
        self, events: E_contra, now: float, ready: E_contra, rejects: list[Reject], /
    ) -> None: ...
    def expire(self, now: float, ready: E_contra, /) -> None: ...
    def deadline(self) -> float | None: ...
    def finish(self, ready: E_contra, /) -> None: ...
    def snapshot(self) -> FeedState: ...
    def restore(self, state: FeedState, now: float, /) -> None: ...


@runtime_checkable
class Instruments(Protocol[E_contra, Q_contra]):
    """The books of every instrument, and the write rule (core/instruments.py)."""

    @property
    def keep(self) -> frozenset[str] | None: ...
    @property
    def kept(self) -> Collection[str]: ...
    @property
    def anomalies(self) -> dict[str, int]: ...
    @property
    def applied(self) -> int: ...
    @property
    def skipped(self) -> int: ...
    @property
    def crossed(self) -> int: ...
    @property
    def locked(self) -> int: ...
    @property
    def last_seq(self) -> int | None: ...
    def __len__(self) -> int: ...
    def apply(
        self, events: E_contra, quotes: Q_contra, anomalies: list[tuple[str, Event]], /
    ) -> None: ...
    def names(self) -> frozenset[str]: ...
    def book(self, name: str = "", /) -> OrderBook: ...
    def heap_sizes(self, name: str = "", /) -> tuple[int, int]: ...
    def last_quote(self, name: str = "", /) -> Bbo | None: ...
    def snapshot(self) -> InstrumentsState: ...
    def restore(self, state: InstrumentsState, /) -> None: ...


@runtime_checkable
class Formatter(Protocol[Q_contra]):
    """Quotes as L1 CSV text (core/l1.py)."""

    @property
    def with_instrument(self) -> bool: ...
    def format(self, quotes: Q_contra, /) -> str: ...


@runtime_checkable
class Depths(Protocol[E_contra, R_contra]):
    """The books of every instrument with order counts, and a schema's rows (core/schemas.py)."""

    @property
    def schema(self) -> Schema: ...
    @property
    def keep(self) -> frozenset[str] | None: ...
    @property
    def kept(self) -> Collection[str]: ...
    @property
    def anomalies(self) -> dict[str, int]: ...
    @property
    def applied(self) -> int: ...
    @property
    def skipped(self) -> int: ...
    @property
    def crossed(self) -> int: ...
    @property
    def locked(self) -> int: ...
    @property
    def last_seq(self) -> int | None: ...
    @property
    def gaps(self) -> int: ...
    @property
    def interval(self) -> int | None: ...
    def __len__(self) -> int: ...
    def apply(
        self,
        events: E_contra,
        rows: R_contra,
        anomalies: list[tuple[str, Event]],
        gaps: Collection[int] = ...,
        /,
    ) -> None: ...
    def finish(self, rows: R_contra, /) -> None: ...
    def mark_gap(self) -> None: ...
    def names(self) -> frozenset[str]: ...
    def book(self, name: str = "", /) -> DepthBook: ...
    def snapshot(self) -> DepthsState: ...
    def restore(self, state: DepthsState, /) -> None: ...


@runtime_checkable
class RowFormatter(Protocol[R_contra]):
    """A schema's rows as CSV text (core/schemas.py)."""

    @property
    def with_instrument(self) -> bool: ...
    def header(self) -> str: ...
    def format(self, rows: R_contra, /) -> str: ...


# -- what a core builds them with (`Core`'s fields) ----------------------------------------------


class CsvParserMaker(Protocol[E_co]):
    def __call__(
        self,
        header: str,
        *,
        instrument_column: str | None = ...,
        max_line: int = ...,
        ns_times: bool = ...,
    ) -> CsvParser[E_co]: ...


class FeedMaker(Protocol[E_contra]):
    def __call__(
        self,
        *,
        start_seq: int | None = ...,
        max_pending: int = ...,
        gap_timeout: float | None = ...,
    ) -> Feed[E_contra]: ...


class InstrumentsMaker(Protocol[E_contra, Q_contra]):
    def __call__(
        self, keep: Collection[str] | None = ..., *, kept: Collection[str] | None = ...
    ) -> Instruments[E_contra, Q_contra]: ...


class FormatterMaker(Protocol[Q_contra]):
    def __call__(self, *, with_instrument: bool = ...) -> Formatter[Q_contra]: ...


class EventsMaker(Protocol[E_co]):
    def __call__(self, events: Iterable[Event] = ..., /) -> E_co: ...


class PackEvents(Protocol[E_contra]):
    def __call__(
        self,
        events: E_contra,
        partitions: int,
        last_seq: Sequence[int],
        max_body: int,
        /,
        *,
        by_line: bool = ...,
    ) -> tuple[list[Packed], int]: ...


class DepthsMaker(Protocol[E_contra, R_contra]):
    def __call__(
        self,
        schema: Schema,
        keep: Collection[str] | None = ...,
        *,
        kept: Collection[str] | None = ...,
        name: Callable[[str, int], str] | None = ...,
    ) -> Depths[E_contra, R_contra]: ...


class RowFormatterMaker(Protocol[R_contra]):
    def __call__(
        self, schema: Schema, *, with_instrument: bool = ...
    ) -> RowFormatter[R_contra]: ...
