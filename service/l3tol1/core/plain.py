"""Saved state as plain data (what JSON holds), and read back checked (SPEC §8).

Each piece of saved state — a checkpoint's, a worker's on JetStream — is turned into plain data
by the class that owns it (``to_plain``) and read back by that class (``from_plain``) through a
`PlainReader`, which checks every type and bound on the way and names where a value is wrong
(``feed.pending.seq: not an integer in 0..18446744073709551615``). Reading never trusts the
data: a damaged piece is a `PlainDataError`, never a traceback or a wrong state.

Rows of equal length are stored column by column (`columns`): compact, and cheap to load.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = ["PlainDataError", "PlainReader", "columns", "int64", "natural"]

MAX_U64 = 2**64 - 1


class PlainDataError(ValueError):
    """A piece of saved state is damaged: ``where`` it is, and what is wrong."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


def natural(value: Any) -> bool:
    """A plain non-negative integer (never a bool)."""
    return type(value) is int and value >= 0


def int64(value: Any) -> bool:
    """A plain integer that fits in 64 signed bits (a Databento price may be any of them)."""
    return type(value) is int and -(2**63) <= value < 2**63


def columns(rows: Iterable[Sequence[Any]], names: Sequence[str]) -> dict[str, list[Any]]:
    """Rows of ``len(names)`` values as one list per column."""
    out: dict[str, list[Any]] = {name: [] for name in names}
    lists = [out[name] for name in names]
    for row in rows:
        for column, value in zip(lists, row, strict=True):
            column.append(value)
    return out


class PlainReader:
    """Reads values out of plain data, failing with `PlainDataError` at the first bad one."""

    def fail(self, where: str, problem: str) -> None:
        raise PlainDataError(where, problem)

    def get(self, obj: Any, key: str, where: str) -> Any:
        """``obj[key]``, which must be there."""
        if not isinstance(obj, dict):
            self.fail(where or "(top)", "not an object")
        if key not in obj:
            self.fail(_join(where, key), "missing")
        return obj[key]

    def integer(
        self, obj: Any, key: str, where: str, lo: int = 0, hi: int = MAX_U64, *, null: bool = False
    ) -> Any:
        """An integer in ``lo..hi`` (or None, with ``null``)."""
        value = self.get(obj, key, where)
        if value is None and null:
            return None
        if type(value) is not int or not lo <= value <= hi:
            self.fail(_join(where, key), f"not an integer in {lo}..{hi}")
        return value

    def string(self, obj: Any, key: str, where: str, *, null: bool = False) -> Any:
        """A string (or None, with ``null``)."""
        value = self.get(obj, key, where)
        if value is None and null:
            return None
        if not isinstance(value, str):
            self.fail(_join(where, key), "not a string")
        return value

    def boolean(self, obj: Any, key: str, where: str, *, null: bool = False) -> Any:
        """True or False (or None, with ``null``)."""
        value = self.get(obj, key, where)
        if not (value is True or value is False or (value is None and null)):
            self.fail(_join(where, key), "not a boolean")
        return value

    def items(self, obj: Any, key: str, where: str, item: Callable[[Any], bool]) -> list[Any]:
        """A list whose every value passes ``item``."""
        value = self.get(obj, key, where)
        if not isinstance(value, list) or not all(item(v) for v in value):
            self.fail(_join(where, key), "not a list of the expected values")
        return list(value)

    def counts(self, obj: Any, key: str, where: str) -> dict[str, int]:
        """A map of names to non-negative integers."""
        value = self.get(obj, key, where)
        if not isinstance(value, dict) or not all(natural(v) for v in value.values()):
            self.fail(_join(where, key), "not a map of counts")
        return dict(value)

    def columns(
        self, obj: Any, key: str, where: str, checks: Sequence[tuple[str, Callable[[Any], bool]]]
    ) -> list[tuple[Any, ...]]:
        """The rows stored by `columns` under ``key``: each column checked, all of one length."""
        table = self.get(obj, key, where)
        inner = _join(where, key)
        found = [self.items(table, name, inner, check) for name, check in checks]
        if len({len(column) for column in found}) > 1:
            self.fail(inner, "columns of different lengths")
        return list(zip(*found, strict=True))


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
