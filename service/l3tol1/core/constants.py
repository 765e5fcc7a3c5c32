"""The values both cores depend on, read from the Python core, which defines them.

The compiled core declares the same values in C (core/cy/constants.pxd: enums, bounds, record
layouts), where they cannot be imported from Python; `l3tol1.core._compiled` hands what it was
compiled with to `check` when it is imported, so that a value changed on one side only fails
at import (ImportError naming it: `load("auto")` then falls back with a warning, and
`load("compiled")` fails with that message), never in a row.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

from l3tol1.core import book, csv_parser, feed, mbo, numbers, schemas, wire
from l3tol1.core.records import Action, Anomaly, Side

__all__ = ["check", "mismatches", "reference"]


def _offsets(layout: struct.Struct, names: tuple[str, ...]) -> dict[str, int]:
    """Where each named field of a little-endian struct without padding starts."""
    codes = layout.format.lstrip("<")
    offsets: dict[str, int] = {}
    fields = iter(names)
    for i, code in enumerate(codes):
        if code != "x":  # a pad byte has no name
            offsets[next(fields)] = struct.calcsize("<" + codes[:i])
    return offsets


def reference() -> dict[str, object]:
    """Every shared value by name, as the Python core has it."""
    values: dict[str, object] = {}
    values.update({f"Action.{a.name}": int(a) for a in Action})
    values.update({f"Side.{s.name}": int(s) for s in Side})
    # The compiled core counts anomalies in an array indexed by each kind's place in the enum.
    values.update({f"Anomaly.{a.name}": i for i, a in enumerate(Anomaly)})
    values["Anomaly.count"] = len(Anomaly)
    values.update(
        {
            "numbers.PRICE_SCALE": numbers.PRICE_SCALE,
            "numbers.PRICE_DIGITS": numbers._PRICE_DIGITS,
            "numbers.MAX_PRICE": numbers.MAX_PRICE,
            "numbers.MAX_QTY": numbers.MAX_QTY,
            "numbers.MAX_SEQ": numbers.MAX_SEQ,
            "numbers.MAX_SEQ_TEXT": str(numbers.MAX_SEQ).encode(),
            "csv_parser.MAX_INSTRUMENT_BYTES": csv_parser.MAX_INSTRUMENT_BYTES,
            "book.COMPACT_SLACK": book.COMPACT_SLACK,
            "feed.GAP_MEMORY": feed._GAP_MEMORY,
            "mbo.UNDEF_PRICE": mbo.UNDEF_PRICE,
            "mbo.MAX_TS": mbo.MAX_TS,
            "mbo.HEADER_SIZE": mbo.HEADER_SIZE,
            "mbo.RTYPE_MBO": mbo.RTYPE_MBO,
            "mbo.RTYPE_SYMBOL_MAPPING": mbo.RTYPE_SYMBOL_MAPPING,
            "mbo.RTYPE_ERROR": mbo.RTYPE_ERROR,
            "mbo.F_LAST": mbo.F_LAST,
            "mbo.record_size": mbo._RECORD.size,
            "numbers.NS_PER_DAY": numbers.NS_PER_DAY,
            "schemas.FLAG_CROSSED": schemas.FLAG_CROSSED,
            "schemas.FLAG_LOCKED": schemas.FLAG_LOCKED,
            "schemas.FLAG_GAP": schemas.FLAG_GAP,
            "schemas.FLAG_ANOMALY": schemas.FLAG_ANOMALY,
            "wire.PACKED_TIMES": wire.PACKED_TIMES,
            "wire.EVENTS_MAGIC": wire.EVENTS_MAGIC,
            "wire.QUOTES_MAGIC": wire.QUOTES_MAGIC,
            "wire.event_size": wire.EVENT.size,
            "wire.quote_size": wire.QUOTE.size,
            "wire.little_endian": True,  # the struct formats say "<"; C copies in CPU order
            # (shift, bits) of each field of a packed time, year first
            "wire.time_fields": tuple((shift, bits) for shift, bits, *_ in wire._TIME_FIELDS),
        }
    )
    read = ("publisher_id", "instrument_id", "ts_event", "order_id", "price", "size", "flags",
            "action", "side", "ts_recv", "sequence")  # fmt: skip
    at = _offsets(mbo._RECORD, mbo._FIELD_NAMES)
    values.update({f"mbo.at.{name}": at[name] for name in read})
    event = ("seq", "price", "qty", "line", "time", "ts_event", "action", "side", "last",
             "inst_size", "oid_size", "time_size")  # fmt: skip
    values.update({f"wire.event.{n}": i for n, i in _offsets(wire.EVENT, event).items()})
    quote = ("bid", "ask", "bid_size", "ask_size", "time", "seq", "inst_size", "time_size")
    values.update({f"wire.quote.{n}": i for n, i in _offsets(wire.QUOTE, quote).items()})
    return values


def mismatches(compiled: Mapping[str, object], expected: Mapping[str, object]) -> list[str]:
    """Each value that differs (or is on one side only), as ``name: compiled X, Python core Y``,
    sorted by name."""
    missing = object()
    found = []
    for name in sorted(set(compiled) | set(expected)):
        ours, theirs = compiled.get(name, missing), expected.get(name, missing)
        if ours != theirs:
            shown = ["(none)" if v is missing else repr(v) for v in (ours, theirs)]
            found.append(f"{name}: compiled {shown[0]}, Python core {shown[1]}")
    return found


def check(compiled: Mapping[str, object]) -> None:
    """Refuse a compiled core built with values other than the Python core's.

    :raises ImportError: naming every value that differs.
    """
    found = mismatches(compiled, reference())
    if found:
        raise ImportError(
            f"the compiled core does not match the Python core: {'; '.join(found)}"
            " (rebuild it: python setup.py build_ext --inplace, or reinstall)"
        )
