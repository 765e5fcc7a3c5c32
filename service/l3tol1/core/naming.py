"""The names of Databento's books (SPEC §12): a book per (publisher_id, instrument_id), its rows
named by the instrument's symbol on their day.

The name of a book's rows on a day is fixed when the first record of that book on that day is
parsed, from what is known at that point of the file: the symbol the metadata maps the
instrument_id to on that day, else the CSV's ``symbol`` column, else the latest in-band symbol
mapping, else the instrument_id. `MboNamer.name_quotes` only looks the names up, so a row's name
depends on its place in the file, never on how far apart the stages run. Two publishers never
share a book, nor a name: the rows of every publisher but the first one met get
``@<publisher_id>`` after the name (``ESH1@2``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from l3tol1.core.numbers import MAX_TIME_NS, NS_PER_DAY
from l3tol1.core.plain import PlainReader, natural

__all__ = ["MboNamer", "NamerState"]

MAX_TS = MAX_TIME_NS


@dataclass(slots=True)
class NamerState:
    """An `MboNamer` as plain data, for the checkpoint: what a restart must decide as the
    uninterrupted run did (which publisher came first, which books were met and kept, what the
    in-band symbol mappings said, and the name each book's rows got on each day)."""

    first_publisher: int | None = None
    seen: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    mappings: list[tuple[int, str]] = field(default_factory=list)  # (instrument_id, symbol)
    names: list[tuple[str, int, str]] = field(default_factory=list)  # (key, day, name)
    matched: list[str] = field(default_factory=list)  # the names of `keep` met so far

    def to_plain(self) -> dict[str, Any]:
        """This state as plain data (a checkpoint's ``names``)."""
        return {
            "first_publisher": self.first_publisher,
            "seen": self.seen,
            "kept": self.kept,
            "mappings": self.mappings,
            "names": self.names,
            "matched": self.matched,
        }

    @classmethod
    def from_plain(cls, obj: Any, where: str, read: PlainReader) -> NamerState:
        """The state `to_plain` gave, checked whole.

        :raises PlainDataError: a value is missing or of the wrong type.
        """

        def is_key(value: Any) -> bool:
            match = _BOOK_KEY.fullmatch(value) if isinstance(value, str) else None
            return (
                match is not None and int(match[1]) <= _MAX_PUBLISHER and int(match[2]) <= _MAX_ID
            )

        def is_mapping(value: Any) -> bool:
            return (
                isinstance(value, list)
                and len(value) == 2
                and natural(value[0])
                and value[0] <= _MAX_ID
                and isinstance(value[1], str)
                and value[1] != ""
            )

        def is_name(value: Any) -> bool:
            return (
                isinstance(value, list)
                and len(value) == 3
                and is_key(value[0])
                and natural(value[1])
                and value[1] <= MAX_TS // NS_PER_DAY
                and isinstance(value[2], str)
            )

        return cls(
            first_publisher=read.integer(
                obj, "first_publisher", where, hi=_MAX_PUBLISHER, null=True
            ),
            seen=read.items(obj, "seen", where, is_key),
            kept=read.items(obj, "kept", where, is_key),
            mappings=[(i, s) for i, s in read.items(obj, "mappings", where, is_mapping)],
            names=[(k, d, n) for k, d, n in read.items(obj, "names", where, is_name)],
            matched=read.items(obj, "matched", where, lambda value: isinstance(value, str)),
        )


# A Databento book's key (publisher_id:instrument_id, a u16 and a u32).
_BOOK_KEY = re.compile(r"([0-9]{1,5}):([0-9]{1,10})")
_MAX_PUBLISHER = 2**16 - 1
_MAX_ID = 2**32 - 1


class MboNamer:
    """Book keys and row names of MBO records.

    A book's key is ``<publisher_id>:<instrument_id>``. The name of its rows on a day is fixed
    by `key` when it meets the book's first record of that day, from what is known then: the
    metadata's symbol for that day (``symbols``, set by the parser of each file), else the CSV's
    ``symbol``, else the latest in-band mapping (`learn`), else the id; with ``@<publisher_id>``
    for any publisher but the first one met. `name` only looks it up. With ``keep``
    (``--instruments``), a book is kept when its name, the first time it is met, is one of
    those: its key joins ``kept``, the set the books are filtered by, and its name ``matched``
    (the names of ``keep`` that were met, for the summary's ``instruments_not_seen``).

    ``changed`` is set whenever `snapshot` would give something new; the caller clears it.
    """

    __slots__ = (
        "_books",
        "_day_names",
        "_mapped",
        "_names",
        "changed",
        "first_publisher",
        "keep",
        "kept",
        "matched",
        "symbols",
    )

    def __init__(self, keep: frozenset[str] | None = None) -> None:
        self.symbols: dict[int, tuple[tuple[int, int, str], ...]] = {}
        self.first_publisher: int | None = None
        self.keep = keep
        self.kept: set[str] = set()
        self.matched: set[str] = set()
        self.changed = False
        # (publisher, instrument_id) -> (its key, the day of its last record met)
        self._books: dict[tuple[int, int], tuple[str, int]] = {}
        self._mapped: dict[int, str] = {}  # in-band symbol mappings: instrument_id -> symbol
        self._names: dict[tuple[str, int], str] = {}  # (key, day) -> the name of its rows
        self._day_names: Any = None  # a compiled core's memo of `name` (`QuoteBatch.rename`)

    def key(self, publisher: int, instrument_id: int, ts_recv: int, symbol: str = "") -> str:
        """The key of the book a record belongs to (``symbol``: the CSV's, or ""); the first
        record of a book on a day fixes the name of that book's rows on that day."""
        day = ts_recv // NS_PER_DAY
        book = self._books.get((publisher, instrument_id))
        if book is not None and book[1] == day:
            return book[0]
        return self._meet(publisher, instrument_id, day, symbol)

    def _meet(self, publisher: int, instrument_id: int, day: int, symbol: str) -> str:
        book = self._books.get((publisher, instrument_id))
        new = book is None
        if book is None:
            if self.first_publisher is None:
                self.first_publisher = publisher
            key = f"{publisher}:{instrument_id}"
            self.changed = True
        else:
            key = book[0]
        self._books[(publisher, instrument_id)] = (key, day)
        name = self._names.get((key, day))
        if name is None:
            name = self._names[(key, day)] = self._name_now(publisher, instrument_id, day, symbol)
            self.changed = True
        if new and self.keep is not None and name in self.keep:
            self.kept.add(key)
            self.matched.add(name)
        return key

    def _name_now(self, publisher: int, instrument_id: int, day: int, symbol: str) -> str:
        """A book's name on a day from what is known now."""
        for first, end, mapped in self.symbols.get(instrument_id, ()):
            if first <= day < end:
                symbol = mapped
                break
        else:
            symbol = symbol or self._mapped.get(instrument_id) or str(instrument_id)
        return symbol if publisher == self.first_publisher else f"{symbol}@{publisher}"

    def learn(self, instrument_id: int, symbol: str) -> None:
        """An in-band symbol mapping: ``instrument_id`` is ``symbol`` from here on (for the
        days of its books not met yet)."""
        if symbol and self._mapped.get(instrument_id) != symbol:
            self._mapped[instrument_id] = symbol
            self.changed = True

    def name(self, key: str, ts_recv: int) -> str:
        """The name of a book's rows on the day of ``ts_recv`` (fixed by `key`)."""
        day = ts_recv // NS_PER_DAY
        name = self._names.get((key, day))
        if name is None:  # not reached: every row's record passed through `key` first
            publisher, _, instrument_id = key.partition(":")
            name = self._name_now(int(publisher), int(instrument_id), day, "")
        return name

    def name_quotes(self, quotes: Any) -> Any:
        """The quotes, each named by its instrument's name on its day instead of its key (a
        compiled core's quotes are renamed in place)."""
        if not isinstance(quotes, list):
            self._day_names = quotes.rename(self.name, self._day_names)
            return quotes
        name = self.name
        return [q._replace(instrument=name(q.instrument, q.time)) for q in quotes]

    def snapshot(self) -> NamerState:
        """The namer's decisions so far, as plain data (sorted: the same decisions give the
        same state)."""
        return NamerState(
            self.first_publisher,
            sorted(key for key, _ in self._books.values()),
            sorted(self.kept),
            sorted(self._mapped.items()),
            sorted((key, day, name) for (key, day), name in self._names.items()),
            sorted(self.matched),
        )

    def restore(self, state: NamerState) -> None:
        """Load a `snapshot`."""
        self.first_publisher = state.first_publisher
        self._books = {}
        for key in state.seen:
            publisher, _, instrument_id = key.partition(":")
            self._books[(int(publisher), int(instrument_id))] = (key, -1)  # no day met yet
        self.kept.clear()
        self.kept.update(state.kept)
        self.matched.clear()
        self.matched.update(state.matched)
        self._mapped = dict(state.mappings)
        self._names = {(key, day): name for key, day, name in state.names}
        self._day_names = None
        self.changed = False
