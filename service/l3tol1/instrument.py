"""One instrument's state: its resequencer, its book and the last L1 row written.

The pipeline drives the parts from its stages; later, a broker-fed pipeline keeps one of these
per instrument. SPEC §2's write rule is applied by `OrderBook.apply_events`, in the same loop as
the book updates (one pass per batch, no call per event); this class keeps what it needs between
batches: the last BBO written and the counters.
"""

from __future__ import annotations

from typing import Any

from l3tol1.book import Bbo, OrderBook
from l3tol1.events import Event, Row
from l3tol1.resequencer import Resequencer

__all__ = ["Instrument"]


class Instrument:
    """Resequencer, book, last written BBO and the counters of applying events."""

    def __init__(self, resequencer: Resequencer, book: OrderBook | None = None) -> None:
        self.resequencer = resequencer
        self.book = book if book is not None else OrderBook()
        self.last_bbo: Bbo | None = None
        self.applied = 0
        self.last_seq: int | None = None

    def apply(
        self, events: list[Event], rows: list[Row], anomalies: list[tuple[str, Event]]
    ) -> None:
        """Apply events in order; append an L1 row for each change of the two-sided BBO.

        A row is written when both sides are non-empty and (bid, ask, bid size, ask size)
        differs from the last row written; a one-sided or empty book writes nothing, and the
        comparison is always with the last row actually written. Crossed books are written.
        """
        if events:
            self.last_bbo = self.book.apply_events(events, self.last_bbo, rows, anomalies)
            self.applied += len(events)
            self.last_seq = events[-1][0]

    def snapshot_after_apply(self) -> dict[str, Any]:
        """Book, last BBO and counters as plain data (the resequencer is snapshotted apart)."""
        return {
            "book": self.book.snapshot(),
            "last_bbo": list(self.last_bbo) if self.last_bbo is not None else None,
            "applied": self.applied,
            "last_seq": self.last_seq,
        }

    def restore_after_apply(self, state: dict[str, Any]) -> None:
        """Load `snapshot_after_apply` output."""
        self.book = OrderBook.restore(state["book"])
        bbo = state["last_bbo"]
        self.last_bbo = (float(bbo[0]), float(bbo[1]), int(bbo[2]), int(bbo[3])) if bbo else None
        self.applied = int(state["applied"])
        self.last_seq = state["last_seq"]
