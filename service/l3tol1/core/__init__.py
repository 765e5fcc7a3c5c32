"""The correctness of l3tol1: pure, synchronous, no I/O, no third-party imports.

    records      Event, Reject, Quote and the closed sets of names (actions, reasons, anomalies)
    numbers      every numeric field's bounds, parsing and formatting
    csv_parser   L3 CSV rows to events and rejects (SPEC §1, §4, §9)
    mbo          Databento MBO records (DBN or CSV) to events (SPEC §12)
    feed         one input's events back in seq order (SPEC §5)
    book         one instrument's orders and price levels
    instruments  events applied to the books, and the write rule (SPEC §2, §3, §9)
    l1           quotes as L1 CSV text (SPEC §2)
    schemas      the output schemas' books, rows and CSV text (SPEC §14)
    wire         batches of events and quotes as message bodies (SPEC §13)
    _compiled    the same classes over whole batches in C (Cython), when it was built

The pipeline gets its classes from a `Core` (`load`): the pure-Python modules, the reference,
or the compiled ones, which give the same results faster. Events and quotes travel between the
stages in the core's own containers (`Core.events`, `Core.quotes`, `Core.rows`): lists of
records here, C arrays in the compiled core.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from functools import partial
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    Literal,
    NamedTuple,
    ParamSpec,
    TypeAlias,
    TypeVar,
    overload,
)

from l3tol1.core import wire
from l3tol1.core.csv_parser import CsvParser
from l3tol1.core.feed import Feed
from l3tol1.core.instruments import Instruments
from l3tol1.core.l1 import L1Formatter
from l3tol1.core.mbo import MboMetadata, MboParser
from l3tol1.core.naming import MboNamer
from l3tol1.core.records import Event, Quote
from l3tol1.core.schemas import Depths, Row, RowFormatter

if TYPE_CHECKING:  # for mypy: defining the protocols costs the start-up ~2 ms
    from l3tol1.core import protocols as p
    from l3tol1.core._compiled import EventBatch, QuoteBatch, RowBatch

__all__ = [
    "CORES",
    "AnyCore",
    "CompiledCore",
    "Core",
    "PythonCore",
    "available",
    "compiled_core",
    "load",
    "python_core",
]

CORES = ("auto", "compiled", "python")

E = TypeVar("E", bound="p.Events")
Q = TypeVar("Q", bound="p.Quotes")
RS = TypeVar("RS", bound="p.Rows")
T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")


class Core(NamedTuple, Generic[E, Q, RS]):
    """One core as the rest of the package sees it: what it builds each of its objects with.

    Both cores are this one class, each filled with its own classes and functions (`load`), so
    their interfaces cannot drift apart: a field's type (core/protocols.py) is the interface,
    and mypy checks each core's makers against it (the compiled ones through _compiled.pyi).
    ``E``, ``Q`` and ``RS`` are the core's containers of events, quotes and a schema's rows: the
    objects of one core take the containers that core makes (`events`, `quotes`, `rows`, the
    parsers, `unpack_*`).
    A NamedTuple: immutable, and cheap to define at start-up (a dataclass costs ~1 ms more).
    """

    name: str  # "python" or "compiled", as the start log line says
    csv_parser: p.CsvParserMaker[E]
    mbo_parser: Callable[[MboMetadata, MboNamer], p.MboParser[E]]
    feed: p.FeedMaker[E]
    instruments: p.InstrumentsMaker[E, Q]
    formatter: p.FormatterMaker[Q]
    events: p.EventsMaker[E]  # a container of these events (none: an empty one)
    quotes: Callable[[], Q]  # an empty container of quotes
    pack_events: p.PackEvents[E]  # as `core.wire.pack_events`
    instrument_days: Callable[[E], set[tuple[str, int]]]
    unpack_events: Callable[[bytes], E]  # raises ValueError on a body it cannot read
    pack_quotes: Callable[[Q, int], list[bytes]]
    unpack_quotes: Callable[[bytes], Q]  # raises ValueError on a body it cannot read
    depths: p.DepthsMaker[E, RS]  # the books and rows of an output schema (SPEC §14)
    row_formatter: p.RowFormatterMaker[RS]
    rows: Callable[[], RS]  # an empty container of a schema's rows


PythonCore: TypeAlias = Core[list[Event], list[Quote], list[Row]]
CompiledCore: TypeAlias = "Core[EventBatch, QuoteBatch, RowBatch]"
# What `load` returns: either core, chosen at run time. Code that holds it passes each core's
# containers back to the same core only; the protocols still check every call's shape.
AnyCore: TypeAlias = Core[Any, Any, Any]


def _events(events: Iterable[Event] = (), /) -> list[Event]:
    return list(events)


def _quotes() -> list[Quote]:
    return []


def _rows() -> list[Row]:
    return []


def python_core() -> PythonCore:
    """The pure-Python core: the reference, and the fallback where nothing was compiled."""
    return Core(
        name="python",
        csv_parser=CsvParser,
        mbo_parser=MboParser,
        feed=Feed,
        instruments=Instruments,
        formatter=L1Formatter,
        events=_events,
        quotes=_quotes,
        pack_events=wire.pack_events,
        instrument_days=wire.instrument_days,
        unpack_events=wire.unpack_events,
        pack_quotes=wire.pack_quotes,
        unpack_quotes=wire.unpack_quotes,
        depths=Depths,
        row_formatter=RowFormatter,
        rows=_rows,
    )


def compiled_core() -> CompiledCore:
    """The compiled core: the same classes over C arrays. Its objects share one table of
    instrument names (events, books and quotes hold an index into it): each of its classes
    takes that table first, bound here.

    :raises ImportError: it was not built, or does not match the Python core (the message
        names what differs).
    """
    from l3tol1.core import _compiled as c

    table = c.InstrumentTable()
    return Core(
        name="compiled",
        csv_parser=_bind(c.CsvParser, table),
        mbo_parser=_bind(c.MboParser, table),
        feed=_bind(c.Feed, table),
        instruments=_bind(c.Instruments, table),
        formatter=c.L1Formatter,
        events=_bind(c.EventBatch, table),
        quotes=_bind(c.QuoteBatch, table),
        pack_events=c.pack_events,
        instrument_days=c.instrument_days,
        unpack_events=_bind(c.unpack_events, table),
        pack_quotes=c.pack_quotes,
        unpack_quotes=_bind(c.unpack_quotes, table),
        depths=_bind(c.Depths, table),
        row_formatter=c.RowFormatter,
        rows=_bind(c.RowBatch, table),
    )


def _bind(make: Callable[Concatenate[T, P], R], first: T) -> Callable[P, R]:
    """``make`` with its first argument given: typed, so that mypy checks what is left of its
    signature against the protocol of the field it fills (a bare `partial` would not)."""
    return partial(make, first)


def available() -> bool:
    """Whether the compiled core was built and loads. One that was built but does not load
    (it does not match the Python core, or a piece of it is missing) is said in a warning."""
    try:
        import l3tol1.core._compiled  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name == "l3tol1.core._compiled":  # not built: the usual fallback, silent
            return False
        _warn_unusable(exc)
        return False
    except ImportError as exc:
        _warn_unusable(exc)
        return False
    return True


def _warn_unusable(exc: ImportError) -> None:
    warnings.warn(
        f"the compiled core was built but cannot be used ({exc}): running the Python core",
        RuntimeWarning,
        stacklevel=3,
    )


@overload
def load(name: Literal["python"]) -> PythonCore: ...
@overload
def load(name: Literal["compiled"]) -> CompiledCore: ...
@overload
def load(name: str = "auto") -> AnyCore: ...
def load(name: str = "auto") -> AnyCore:
    """The core to run with: "compiled", "python", or "auto" (compiled when it was built).

    :raises ImportError: "compiled" was asked for and was not built, or cannot be used.
    """
    if name == "python" or (name == "auto" and not available()):
        return python_core()
    return compiled_core()
