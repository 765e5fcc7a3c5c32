"""The work of each stage, as pure synchronous steps: a batch in, a batch out (SPEC §1-5, §9, §12).

    ParseStep  chunk of lines -> events and rejects (a parser per file's header)
    FeedStep   events -> events in seq order (the resequencer), and the checkpoint's cut
    ApplyStep  events -> quotes (the books and the write rule)

A step does no I/O and has no clock of its own: the time is passed in (``now``), so tests drive
it directly with a fake clock; stages.py's async loops only move batches and time. What a step
has to say (a gap declared lost, an error record in a Databento file) goes to the log.
"""

from __future__ import annotations

from operator import itemgetter
from typing import TYPE_CHECKING, Any

from l3tol1.checkpoint import InputRecord
from l3tol1.core import AnyCore
from l3tol1.core.csv_parser import HeaderError
from l3tol1.core.mbo import MboMetadata
from l3tol1.core.mbo_csv import MboCsvParser, is_mbo_header
from l3tol1.core.naming import MboNamer, NamerState
from l3tol1.core.records import Event
from l3tol1.errors import InputError
from l3tol1.log import get_logger
from l3tol1.run.batch import Batch, Cut
from l3tol1.run.cuts import CutPolicy
from l3tol1.sources.base import Chunk, Position

if TYPE_CHECKING:
    from l3tol1.core import protocols

__all__ = ["ApplyStep", "FeedStep", "ParseStep", "instruments_not_seen"]

_by_line = itemgetter(0)


class ParseStep:
    """Rows to events and rejects, with a parser built from each file's header (SPEC §1, §4):
    an L3 CSV header, Databento's MBO CSV export header, or a DBN file's metadata (§12).

    The parsers are the core's (`Core.csv_parser`, `Core.mbo_parser`); Databento's CSV export
    is read by the Python parser whichever the core, its events put in the core's container.
    A batch that changed the namer carries its state (`Batch.names`), for the checkpoint; the
    error records of a live Databento recording are logged (``dbn_error_record``).

    A header that cannot be used, met while running (a followed file replaced by one of other
    columns), ends the input as damage does: the batch carries the error, ``ended`` is set, and
    the caller stops reading (what was read after it is not parsed).
    """

    def __init__(
        self,
        name: str,
        *,
        core: AnyCore,
        instrument_column: str | None,
        namer: MboNamer,
        ns_times: bool = False,
    ) -> None:
        self.name = name
        self.core = core
        self.instrument_column = instrument_column
        # an output schema's times are int64 ns: an L3 CSV time beyond them is a bad time
        self.ns_times = ns_times
        self.namer = namer  # names Databento's books, across files
        self.parser: Any = None
        self.mbo = False  # the rows are Databento MBO records: in file order, ns times
        self.ended = False  # by a header that cannot be used
        self.log = get_logger()

    def layout(self) -> tuple[bool, bool]:
        """The output columns the current parser's rows make: (instrument column, ns times)."""
        if self.mbo:
            return True, True
        return self.parser.instrument_column is not None, False

    def use(self, header: str | MboMetadata) -> None:
        """Parse from now on with the parser of this header line (or DBN metadata).

        :raises InputError: the header lacks a column or names one twice.
        """
        if isinstance(header, MboMetadata):
            self.parser, self.mbo = self.core.mbo_parser(header, self.namer), True
            return
        try:
            if is_mbo_header(n.strip() for n in header.removeprefix("\ufeff").split(",")):
                self.parser, self.mbo = MboCsvParser(header, self.namer), True
            else:
                parser = self.core.csv_parser(
                    header, instrument_column=self.instrument_column, ns_times=self.ns_times
                )
                self.parser, self.mbo = parser, False
        except (HeaderError, ValueError) as exc:
            raise InputError(f"input {self.name}: {exc}") from exc

    def step(self, chunk: Chunk) -> Batch:
        """The batch of one chunk."""
        batch = Batch(
            events=self.core.events(),
            rejects=chunk.rejects,
            position=chunk.position,
            end_of_input=chunk.end_of_input,
            caught_up=chunk.caught_up,
            damage=chunk.damage,
        )
        if chunk.header is not None:
            try:
                self.use(chunk.header)
            except InputError as exc:
                # The position stays the last chunk's: a checkpoint resumes at the header,
                # which a restart then refuses at once, naming it.
                self.ended = True
                return Batch(self.core.events(), end_of_input=True, damage=exc)
            batch.layout = self.layout()
        batch.ordered = self.mbo
        if chunk.data:
            assert self.parser is not None  # a file's first chunk carries its header
            events, rejects = self.parser.parse(chunk.data, chunk.first_line)
            if type(events) is list:  # a Python parser's events
                events = self.core.events(events)
            batch.events = events
            batch.rejects.extend(rejects)
            self._log_errors()
        if self.namer.changed:
            batch.names = self.namer.snapshot()
            self.namer.changed = False
        return batch

    def counts(self, name: str) -> dict[str, int]:
        """Databento MBO records by action (``A``, ``C``, ``R``...), or DBN records by type
        (``mbo``, ``symbol_mapping``, ``system``...); empty for L3 CSV."""
        return dict(getattr(self.parser, name, {}))

    def _log_errors(self) -> None:
        """What the live gateway said went wrong, recorded in the file (SPEC §12)."""
        errors = getattr(self.parser, "errors", None)
        if errors:
            for line, text in errors:
                self.log.warning("dbn_error_record", input=self.name, line=line, text=text)
            errors.clear()


class FeedStep:
    """Events into seq order (SPEC §5); the step that takes each checkpoint's cut.

    Rejects leave in input order whatever the batches were: those found by the parser and the
    late and duplicate rows found here are merged by line, so that a restart, whose reads are
    cut elsewhere, writes the same reject file.

    :param position: where the source stands: each batch's replaces it.
    :param names: the namer's state at ``position``; each batch that carries a newer one
        replaces it, so a cut holds the names as of its position, however far the parse step
        has run ahead.
    :param cuts: when checkpoints are due; None: no checkpoint.
    """

    def __init__(
        self,
        feed: protocols.Feed[Any],
        position: Position,
        names: NamerState,
        *,
        core: AnyCore,
        cuts: CutPolicy | None,
    ) -> None:
        self.feed = feed
        self.position = position
        self.names = names
        self.core = core
        self.cuts = cuts
        self.changed = False  # since the last cut: an idle run has nothing new to record
        self.log = get_logger()

    def deadline(self) -> float | None:
        """When to step without a batch: a gap's timeout, or a checkpoint due (None: never)."""
        deadline: float | None = self.feed.deadline()
        if self.changed and self.cuts is not None:
            due = self.cuts.next_due
            deadline = due if deadline is None else min(deadline, due)
        return deadline

    def step(self, batch: Batch | None, now: float) -> Batch | None:
        """Order a batch (None: the deadline passed); what to send on (None: nothing)."""
        feed = self.feed
        ready = self.core.events()
        if batch is None:  # a gap timed out, or a checkpoint is due
            out = Batch()
            feed.expire(now, ready)
            self.changed = self.changed or bool(ready)
        else:
            self.changed = True
            if batch.position is not None:
                self.position = batch.position
            if batch.names is not None:
                self.names = batch.names
            out = Batch(
                rejects=batch.rejects,
                end_of_input=batch.end_of_input,
                layout=batch.layout,
                ordered=batch.ordered,
                caught_up=batch.caught_up,
                damage=batch.damage,
            )
            if batch.ordered:  # Databento's records: applied in file order (SPEC §12)
                ready = batch.events
                feed.received += len(ready)
            else:
                feed.push(batch.events, now, ready, out.rejects)
            if batch.end_of_input:
                feed.finish(ready)
            out.rejects.sort(key=_by_line)
        if feed.skipped:
            # where each gap was declared: before the event after it (the rows' flag 4)
            out.gaps = [last + 1 for _, last in feed.skipped]
        self._log_gaps()
        out.events = ready
        if self.cuts is not None and self.changed and (out.end_of_input or self.cuts.due(now)):
            out.cut = self.cut()
            self.changed = False
        if ready or out.rejects or out.end_of_input or out.cut or out.layout or out.caught_up:
            return out
        return None

    def stopped(self) -> Batch | None:
        """The last batch when the input stopped (a signal): the cut of a checkpoint, if any.
        What waits for a gap stays unapplied (SPEC §8), but is kept in the checkpoint so that a
        restart carries on with it."""
        return None if self.cuts is None else Batch(cut=self.cut())

    def cut(self) -> Cut:
        """The feed's piece of a checkpoint, with the source position and names it matches."""
        return Cut(InputRecord.at(self.position), self.feed.snapshot(), self.names)

    def _log_gaps(self) -> None:
        for first, last in self.feed.skipped:
            self.log.warning("gap_skipped", first_seq=first, last_seq=last, lost=last - first + 1)
        self.feed.skipped.clear()


def instruments_not_seen(
    listed: tuple[str, ...],
    instruments: protocols.Instruments[Any, Any] | protocols.Depths[Any, Any],
    namer: MboNamer,
) -> list[str]:
    """The instruments of ``--instruments`` of which no event was applied (a book of
    Databento's is named by the namer, its key being no name), in the order listed."""
    seen = instruments.names() | namer.matched
    return [name for name in listed if name not in seen]


class ApplyStep:
    """Events onto the books; the quotes they write (SPEC §2, §3, §9, §12).

    :param namer: names the quotes of Databento's books (keyed by publisher and instrument_id)
        by their symbol on their day.
    :param listed: the instruments to keep (``--instruments``): at the end of the input, those
        never met are warned about (``instruments_not_seen``), once.
    :param depths: the books of an output schema (SPEC §14), which write its rows (named as
        they go), instead of ``instruments`` (then unused).
    """

    def __init__(
        self,
        instruments: protocols.Instruments[Any, Any] | protocols.Depths[Any, Any],
        namer: MboNamer,
        *,
        core: AnyCore,
        listed: tuple[str, ...] | None = None,
    ) -> None:
        self.instruments = instruments
        # a schema's books are the ones with a `finish` (the protocols' isinstance is slower)
        self.depths: protocols.Depths[Any, Any] | None = (
            instruments if hasattr(instruments, "finish") else None  # type: ignore[assignment]
        )
        self.namer = namer
        self.core = core
        self.listed = listed
        self.log = get_logger()

    def step(self, batch: Batch) -> Batch:
        """Apply a batch's events; the same batch, with its quotes instead."""
        instruments = self.instruments
        anomalies: list[tuple[str, Event]] = []
        if self.depths is not None:  # a schema's rows (SPEC §14), named as they go
            rows = self.core.rows()
            if batch.events:
                self.depths.apply(batch.events, rows, anomalies, batch.gaps or ())
            if batch.end_of_input:
                self.depths.finish(rows)
            batch.quotes = rows
        elif batch.events:
            assert not hasattr(instruments, "finish")
            batch.quotes = self.core.quotes()
            instruments.apply(batch.events, batch.quotes, anomalies)
            if batch.ordered and batch.quotes:
                batch.quotes = self.namer.name_quotes(batch.quotes)
        for kind, event in anomalies:
            self.log.debug("anomaly", kind=kind, seq=event.seq, line=event.line)
        if batch.cut is not None:
            batch.cut.instruments = instruments.snapshot()
        if batch.end_of_input and self.listed is not None:
            missing = instruments_not_seen(self.listed, instruments, self.namer)
            if missing:
                self.log.warning(
                    "instruments_not_seen",
                    instruments=missing,
                    hint="no event of these --instruments was met in the input: check their"
                    " spelling (names are case-sensitive)",
                )
        batch.events = None
        return batch
