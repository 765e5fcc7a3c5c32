"""The names of Databento's rows (core/naming.py): the compiled core's quotes, renamed in C
through `QuoteBatch.rename`'s memo, ask the namer once per book and day, across batches, and
get the reference's names."""

from __future__ import annotations

from typing import Any

import pytest
from bench.generate_mbo import metadata, pack, records

from l3tol1.core import available, load
from l3tol1.core.naming import MboNamer
from l3tol1.sources.dbn import read_metadata

pytestmark = pytest.mark.skipif(not available(), reason="the compiled core was not built")


class CountingNamer(MboNamer):
    """A namer that counts what it is asked of `name`."""

    __slots__ = ("asked",)

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[str, int]] = []

    def name(self, key: str, ts_recv: int) -> str:
        self.asked.append((key, ts_recv // 86_400_000_000_000))
        return super().name(key, ts_recv)


def named_rows(core_name: str, namer: MboNamer, batches: int) -> list[tuple[str, int]]:
    """(instrument, time) of every quote of 6,000 records over two days, in ``batches``."""
    core: Any = load(core_name)
    found = read_metadata(metadata(), "test")
    assert found is not None
    parser = core.mbo_parser(found[0], namer)
    instruments = core.instruments(None, kept=namer.kept)
    data = [pack(r) for r in records(6000, seed=2, publishers=(1, 2))]
    step = -(-len(data) // batches)
    rows = []
    for start in range(0, len(data), step):
        events, _ = parser.parse(b"".join(data[start : start + step]), start + 1)
        if type(events) is list:
            events = core.events(events)
        quotes = core.quotes()
        instruments.apply(events, quotes, [])
        rows += [(q.instrument, q.time) for q in namer.name_quotes(quotes)]
    return rows


def test_the_memo_asks_once_per_book_and_day() -> None:
    """Thirty batches, eight books over two days: sixteen questions, the reference's names."""
    namer = CountingNamer()
    rows = named_rows("compiled", namer, 30)
    assert rows == named_rows("python", MboNamer(), 30)
    assert len(namer.asked) == len(set(namer.asked)) == 16
    assert {name for name, _ in rows} >= {"ESH4", "OLDSYM", "NEWSYM", "NEWSYM@2"}


def test_a_memo_of_another_table_is_not_used() -> None:
    """A memo holds indices into one core's table: quotes of another core's table get a new
    memo (and the names of their own table)."""
    first: Any = load("compiled")
    second: Any = load("compiled")
    memo = first.quotes().rename(lambda key, time: key)
    assert second.quotes().rename(lambda key, time: key, memo) is not memo
    assert first.quotes().rename(lambda key, time: key, memo) is memo
