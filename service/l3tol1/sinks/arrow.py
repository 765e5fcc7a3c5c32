"""L1 rows as Arrow columns (SPEC §11): the Parquet output's schema and its buffered columns;
the output schemas' rows likewise (SPEC §14).

Quotes are buffered column by column in typed arrays (8 bytes a value, not a Python int) and
handed to Arrow without a copy. Prices become the double nearest their decimal (rounded once),
CSV times microseconds since the epoch, Databento's nanoseconds as they are.
"""

from __future__ import annotations

import array
import functools
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from l3tol1.core.numbers import format_price
from l3tol1.core.records import Quote
from l3tol1.core.schemas import Row, Schema, csv_columns

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["ArrowValues", "L1Columns", "RowColumns", "l1_schema", "rows_schema"]


@functools.cache
def l1_schema(instrument: bool, nanoseconds: bool) -> pa.Schema:
    """The columns of an L1 layout: an instrument column or not, times in ns or µs."""
    import pyarrow as pa

    unit = "ns" if nanoseconds else "us"
    fields = [pa.field("time", pa.timestamp(unit, tz="UTC"), nullable=False)]
    if instrument:
        fields.append(pa.field("instrument", pa.string(), nullable=False))
    fields += [
        pa.field("bid_price", pa.float64(), nullable=False),
        pa.field("ask_price", pa.float64(), nullable=False),
        pa.field("bid_size", pa.int64(), nullable=False),
        pa.field("ask_size", pa.int64(), nullable=False),
        pa.field("seq_num", pa.uint64(), nullable=False),
    ]
    return pa.schema(fields)


class ArrowValues:
    """Prices and CSV times as Arrow holds them, with small caches (bounded: cleared when full)."""

    def __init__(self) -> None:
        self._seconds: dict[str, int] = {}  # "YYYY-MM-DD HH:MM:SS" -> µs since the epoch
        self._prices: dict[int, float] = {}  # price in 1e-9 -> the double nearest its decimal

    def price(self, price: int) -> float:
        value = self._prices.get(price)
        if value is None:
            if len(self._prices) > 1 << 16:
                self._prices.clear()
            # float() of the shortest decimal is the double nearest the price, rounded once.
            value = self._prices[price] = float(format_price(price))
        return value

    def micros(self, time: str) -> int:
        """A valid CSV time (``2021-08-03 01:00:03.22333 UTC``) in µs since the epoch."""
        second = time[:19]
        base = self._seconds.get(second)
        if base is None:
            if len(self._seconds) > 1 << 16:
                self._seconds.clear()
            stamp = datetime.fromisoformat(second).replace(tzinfo=UTC)
            base = self._seconds[second] = int(stamp.timestamp()) * 1_000_000
        fraction = time[20:-4]
        return base + (int(fraction.ljust(6, "0")) if fraction else 0)


class L1Columns:
    """Quotes buffered column by column, in typed arrays."""

    def __init__(self, values: ArrowValues) -> None:
        self._values = values
        self.time = array.array("q")
        self.instrument: list[str] = []
        self.bid = array.array("d")
        self.ask = array.array("d")
        self.bid_size = array.array("q")
        self.ask_size = array.array("q")
        self.seq = array.array("Q")

    def __len__(self) -> int:
        return len(self.seq)

    def add(self, quotes: list[Quote]) -> None:
        price, micros = self._values.price, self._values.micros
        for time, instrument, bid, ask, bid_size, ask_size, seq in quotes:
            self.time.append(time if isinstance(time, int) else micros(time))
            self.instrument.append(instrument)
            self.bid.append(price(bid))
            self.ask.append(price(ask))
            self.bid_size.append(bid_size)
            self.ask_size.append(ask_size)
            self.seq.append(seq)

    def split(self, count: int, rest: L1Columns) -> tuple[L1Columns, L1Columns]:
        """(these columns' first ``count`` rows, ``rest`` filled with the others)."""
        if count >= len(self):
            return self, rest
        for name in ("time", "instrument", "bid", "ask", "bid_size", "ask_size", "seq"):
            column = getattr(self, name)
            getattr(rest, name).extend(column[count:])
            del column[count:]
        return self, rest

    def table(self, schema: pa.Schema) -> pa.Table:
        """The columns as an Arrow table of ``schema`` (the buffers are not copied)."""
        import pyarrow as pa

        n = len(self)
        columns: list[Any] = []
        for field in schema:
            if field.name == "instrument":
                columns.append(pa.array(self.instrument, pa.string()))
                continue
            values = {
                "time": self.time,
                "bid_price": self.bid,
                "ask_price": self.ask,
                "bid_size": self.bid_size,
                "ask_size": self.ask_size,
                "seq_num": self.seq,
            }[field.name]
            columns.append(pa.Array.from_buffers(field.type, n, [None, pa.py_buffer(values)]))
        return pa.Table.from_arrays(columns, schema=schema)


@functools.cache
def rows_schema(schema: Schema, instrument: bool) -> pa.Schema:
    """The columns of a schema's rows (SPEC §14): ns times, nulls for what a row lacks."""
    import pyarrow as pa

    time = pa.timestamp("ns", tz="UTC")
    letters = pa.dictionary(pa.int32(), pa.string())
    types = {
        "ts_recv": time,
        "ts_event": time,
        "instrument": pa.string(),
        "action": letters,
        "side": letters,
        "price": pa.float64(),
        "size": pa.int64(),
        "sequence": pa.uint64(),
        "flags": pa.uint8(),
    }
    level_types = {"px": pa.float64(), "sz": pa.int64(), "ct": pa.uint32()}
    fields = []
    for name in csv_columns(schema, instrument):
        kind = types.get(name) or level_types[name[4:6]]
        nullable = name not in ("ts_recv", "ts_event", "instrument", "sequence", "flags")
        fields.append(pa.field(name, kind, nullable=nullable))
    return pa.schema(fields)


class RowColumns:
    """A schema's rows buffered as they come, turned into Arrow columns when written."""

    def __init__(self, values: ArrowValues) -> None:
        self._values = values
        self.rows: list[Row] = []

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, rows: Iterable[Row]) -> None:
        """Either core's rows: a list, or the compiled core's `RowBatch` (iterated)."""
        self.rows.extend(rows)

    def split(self, count: int, rest: RowColumns) -> tuple[RowColumns, RowColumns]:
        """(these rows' first ``count``, ``rest`` filled with the others)."""
        if count >= len(self):
            return self, rest
        rest.rows.extend(self.rows[count:])
        del self.rows[count:]
        return self, rest

    def table(self, schema: pa.Schema) -> pa.Table:
        """The rows as an Arrow table of ``schema``."""
        import pyarrow as pa

        price = self._values.price
        rows = self.rows

        def prices(values: list[int | None]) -> list[float | None]:
            return [None if v is None else price(v) for v in values]

        by_name: dict[str, list[Any]] = {
            "ts_recv": [r.ts_recv for r in rows],
            "ts_event": [r.ts_event for r in rows],
            "instrument": [r.instrument for r in rows],
            "action": [r.action or None for r in rows],
            "side": [r.side or None for r in rows],
            "price": prices([r.price for r in rows]),
            "size": [r.size for r in rows],
            "sequence": [r.sequence for r in rows],
            "flags": [r.flags for r in rows],
        }
        columns: list[Any] = []
        for i, field in enumerate(schema):
            values = by_name.get(field.name)
            if values is None:  # a level column: its place among the row's levels
                at = i - (len(schema) - len(rows[0].levels) if rows else 0)
                values = [r.levels[at] for r in rows]
                if field.name.startswith(("bid_px", "ask_px")):
                    values = prices(values)
            if pa.types.is_dictionary(field.type):
                columns.append(pa.array(values, pa.string()).dictionary_encode())
            else:
                columns.append(pa.array(values, field.type))
        return pa.Table.from_arrays(columns, schema=schema)
