"""The values that travel down the pipeline.

An *event* is one valid L3 row, a plain tuple because hundreds of thousands are made per second:

    (seq, action, order_id, side, price, qty, time, line, raw)

- seq: int, the row's seq_num
- action: one of ADD, UPDATE, DELETE, TRADE (small ints)
- order_id: str, opaque (never parsed as a number)
- side: BUY (0) or SELL (1)
- price: float; 0.0 for DELETE (prices are exact: see rows.py on why a float is safe)
- qty: int; 0 for DELETE
- time: str, the row's time exactly as it was written (validated)
- line: int, the 1-based physical line number in the input file
- raw: str, the line itself (a late or duplicate row is rejected with it, SPEC §4)

A *reject* is ``(line, reason, raw)``: a row that could not be applied (SPEC §4).

A `Batch` carries a list of each between two stages: a per-event hand-off would cost more than
the work done on the event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ADD",
    "BUY",
    "DELETE",
    "SELL",
    "TRADE",
    "UPDATE",
    "Batch",
    "Event",
    "Reject",
    "Row",
]

ADD, UPDATE, DELETE, TRADE = 0, 1, 2, 3
BUY, SELL = 0, 1

Event = tuple[int, int, str, int, float, int, str, int, str]
Reject = tuple[int, str, str]
# An L1 row before formatting: (time, seq, bid_price, ask_price, bid_size, ask_size)
Row = tuple[str, int, float, float, int, int]


@dataclass(slots=True)
class Batch:
    """What one stage hands the next: events (or rows) plus the rejects found on the way.

    ``end_of_input`` is set by the source on its last batch when no row can still arrive
    (``--no-follow`` at the end of the file); a stream that simply closes means "stopped".
    ``position`` is where the source stood after the batch; ``checkpoint`` collects each
    stage's state at this batch's cut (see checkpoint.py).
    """

    events: list[Event] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    end_of_input: bool = False
    position: Any = None  # the source's Position after this batch
    checkpoint: dict[str, Any] | None = None
