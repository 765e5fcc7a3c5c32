"""What travels down the line between the stages: a `Batch`, and the pieces of a checkpoint
gathered on the way (`Cut`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from l3tol1.checkpoint import InputRecord
from l3tol1.core.feed import FeedState
from l3tol1.core.instruments import InstrumentsState
from l3tol1.core.naming import NamerState
from l3tol1.core.records import Reject
from l3tol1.core.schemas import DepthsState
from l3tol1.errors import InputError
from l3tol1.sources.base import Position

__all__ = ["Batch", "Cut"]


@dataclass(slots=True)
class Cut:
    """The pieces of one checkpoint, gathered down the line, all as of the same position: the
    feed step starts it (the input, the names, the feed), the books step adds its books."""

    input: InputRecord
    feed: FeedState
    names: NamerState
    instruments: InstrumentsState | DepthsState | None = None


@dataclass(slots=True)
class Batch:
    """What one stage hands the next: events (or quotes) and the rejects found on the way.

    ``events`` and ``quotes`` are in the core's containers (`Core.events`, `Core.quotes`).
    ``end_of_input`` is set on the last batch when no row can still arrive (the input was read
    to its end); a stream that simply closes means "stopped". ``position`` is where the source
    stood after the batch; ``cut``, when set, is a checkpoint taken after this batch;
    ``caught_up``: the followed input has no more for now (flush at once, SPEC §7 latency);
    ``names``: the namer's state after this batch, when parsing it changed the namer;
    ``damage`` (with ``end_of_input``): the input ended early, on this error; every stage
    finishes as at a normal end, then the run fails with it.
    """

    events: Any = None
    quotes: Any = None
    rejects: list[Reject] = field(default_factory=list)
    position: Position | None = None
    end_of_input: bool = False
    cut: Cut | None = None
    layout: tuple[bool, bool] | None = None  # (instrument column, ns times) of a new file
    ordered: bool = False  # the events come in the order to apply them (Databento MBO)
    caught_up: bool = False
    names: NamerState | None = None
    damage: InputError | None = None
    gaps: list[int] | None = None  # the seqs before which the feed declared a gap (SPEC §14)
