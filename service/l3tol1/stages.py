"""The stages of the data path, each a small unit joined to the next by a bounded memory stream.

    source ──Chunk──▶ parse ──Batch──▶ feed ──Batch──▶ apply ──Batch──▶ write
    (read bytes)      (rows →         (seq order,     (books,          (sinks, flush,
                       events)          gaps, cut)      quotes)           fsync, checkpoint)

A stage receives only what it needs, owns its stream ends and closes its send side when done, so
the next stage sees the end of the stream and finishes by itself: shutdown flows down the line.

A checkpoint is cut at a batch boundary without stopping the line: the feed stage starts a `Cut`
with the source position of the batch, the names of Databento's books as the parse stage left
them after that batch (carried down with the batches) and its own state, the apply stage adds
the books after applying that batch, and the write stage makes every row up to the cut durable
before it saves the checkpoint. Each piece is taken at the same point of the stream, so together
they agree.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from l3tol1.checkpoint import Checkpoint, CheckpointStore, InputRecord, RunOptions
from l3tol1.core.csv_parser import HeaderError
from l3tol1.core.feed import FeedState
from l3tol1.core.instruments import InstrumentsState
from l3tol1.core.mbo import MboCsvParser, MboMetadata, MboNamer, NamerState, is_mbo_header
from l3tol1.core.records import Event, Quote, Reject
from l3tol1.errors import InputError
from l3tol1.log import get_logger
from l3tol1.settings import FINAL_FLUSH_TIMEOUT
from l3tol1.sinks.writer import Writer
from l3tol1.sources.base import Chunk, Position, Source

if TYPE_CHECKING:
    from l3tol1.core import protocols

__all__ = [
    "ApplyStage",
    "Batch",
    "Checkpointer",
    "Cut",
    "FeedStage",
    "Health",
    "ParseStage",
    "WriteStage",
    "instruments_not_seen",
    "read_stage",
]

_by_line = itemgetter(0)


@dataclass(slots=True)
class Cut:
    """The pieces of one checkpoint, gathered down the line."""

    input: InputRecord
    feed: FeedState
    names: NamerState
    instruments: InstrumentsState | None = None


@dataclass(slots=True)
class Batch:
    """What one stage hands the next: events (or quotes) and the rejects found on the way.

    ``end_of_input`` is set on the last batch when no row can still arrive (the input was read
    to its end); a stream that simply closes means "stopped". ``position`` is where the source
    stood after the batch; ``cut``, when set, is a checkpoint taken after this batch;
    ``caught_up``: the followed input has no more for now (flush at once, SPEC §7 latency);
    ``names``: the namer's state after this batch, when parsing it changed the namer.
    ``damage`` (with ``end_of_input``): the input ended early, on this error; every stage
    finishes as at a normal end, then the run fails with it (`WriteStage.damage`).
    """

    events: list[Event] = field(default_factory=list)
    quotes: list[Quote] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    position: Position | None = None
    end_of_input: bool = False
    cut: Cut | None = None
    layout: tuple[bool, bool] | None = None  # (instrument column, ns times) of a new file
    ordered: bool = False  # the events come in the order to apply them (Databento MBO)
    caught_up: bool = False
    names: NamerState | None = None
    damage: InputError | None = None


class Health:
    """When each stage took the batch it holds (None: waiting for one), for /healthz."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.busy: dict[str, float | None] = dict.fromkeys(
            ("source", "parse", "feed", "apply", "write")
        )

    def take(self, stage: str) -> float:
        """``stage`` took a batch now; returns now."""
        self.busy[stage] = now = self.clock()
        return now

    def done(self, stage: str) -> None:
        """``stage`` is waiting for its next batch."""
        self.busy[stage] = None


def _until(deadline: float | None, now: float) -> float:
    return math.inf if deadline is None else max(0.0, deadline - now)


async def read_stage(source: Source, send: ObjectSendStream[Chunk], health: Health) -> None:
    """Send the source's chunks on until it ends (or the caller cancels the reading)."""
    async with send:
        health.take("source")
        async for chunk in source.chunks():
            await send.send(chunk)
            health.take("source")


class ParseStage:
    """Rows to events and rejects, with a parser built from each file's header (SPEC §1, §4):
    an L3 CSV header, Databento's MBO CSV export header, or a DBN file's metadata (§12).

    The parsers are the core's (`Core.csv_parser`, `Core.mbo_parser`); Databento's CSV export
    is read by the Python parser whichever the core, its events put in the core's container.
    A batch that changed the namer carries its state (`Batch.names`), for the checkpoint; the
    error records of a live Databento recording are logged (``dbn_error_record``).

    A header that cannot be used, met while running (a followed file replaced by one of other
    columns), ends the input as damage does (`Chunk.damage`): the lines before it are
    converted, ``stop_reading`` is called, and what was read after it is dropped unparsed.
    """

    def __init__(
        self,
        name: str,
        *,
        core: Any,
        instrument_column: str | None,
        namer: MboNamer,
        stop_reading: Callable[[], None] = lambda: None,
    ) -> None:
        self.name = name
        self.core = core
        self.instrument_column = instrument_column
        self.namer = namer  # names Databento's books, across files
        self.stop_reading = stop_reading
        self.parser: Any = None
        self.mbo = False  # the rows are Databento MBO records: in file order, ns times
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
                parser = self.core.csv_parser(header, instrument_column=self.instrument_column)
                self.parser, self.mbo = parser, False
        except (HeaderError, ValueError) as exc:
            raise InputError(f"input {self.name}: {exc}") from exc

    async def run(
        self, receive: ObjectReceiveStream[Chunk], send: ObjectSendStream[Batch], health: Health
    ) -> None:
        """Parse every chunk received and send its batch on."""
        ended = False  # by a header that cannot be used: the rest is drained unparsed
        async with receive, send:
            async for chunk in receive:
                if ended:
                    continue
                health.take("parse")
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
                        # The position stays the last chunk's: a checkpoint resumes at the
                        # header, which a restart then refuses at once, naming it.
                        end = Batch(self.core.events(), end_of_input=True, damage=exc)
                        await send.send(end)
                        ended = True
                        self.stop_reading()
                        health.done("parse")
                        continue
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
                await send.send(batch)
                health.done("parse")

    def _log_errors(self) -> None:
        """What the live gateway said went wrong, recorded in the file (SPEC §12)."""
        errors = getattr(self.parser, "errors", None)
        if errors:
            for line, text in errors:
                self.log.warning("dbn_error_record", input=self.name, line=line, text=text)
            errors.clear()


class Checkpointer:
    """Decides when a checkpoint is due and saves it once its rows are durable (SPEC §8).

    A checkpoint is due every ``interval`` seconds while data flows, stretched to twenty times
    what the last save took, so that a large one (a deep book, many waiting events) costs at
    most about 5% of the run; when the writer asks for one (a Parquet part is full); and at the
    end of the input and at a clean stop.
    """

    def __init__(
        self,
        store: CheckpointStore,
        options: RunOptions,
        writer: Writer,
        *,
        interval: float,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.options = options
        self.writer = writer
        self.interval = interval
        self.clock = clock
        self.next_due = clock() + interval
        self.saved = 0

    def request(self) -> None:
        """Cut the next batch: the writer has a part to close."""
        self.next_due = -math.inf

    async def save(self, cut: Cut, now: float) -> None:
        """Make every row up to the cut durable, then record the cut; parts closed at the cut
        become visible once the checkpoint that names them is saved."""
        writer = self.writer
        await writer.flush(now, sync=True)
        await writer.output.close_parts(all_rows=True)
        writer.cut_wanted = False
        assert cut.instruments is not None
        checkpoint = Checkpoint(
            options=self.options,
            input=cut.input,
            feed=cut.feed,
            instruments=cut.instruments,
            output=writer.output.state(),
            rejects=writer.rejects.state(),
            names=cut.names,
        )
        await anyio.to_thread.run_sync(self.store.save, checkpoint)
        await writer.output.commit()
        self.saved += 1
        self.next_due = self.clock() + max(self.interval, 20 * self.store.last_seconds)


class FeedStage:
    """Events into seq order (SPEC §5); the stage that starts each checkpoint's cut.

    Rejects leave in input order whatever the batches were: those found by the parser and the
    late and duplicate rows found here are merged by line, so that a restart, whose reads are
    cut elsewhere, writes the same reject file.

    :param names: the namer's state where the source stands (``position``); each batch that
        carries a newer one replaces it, so a cut holds the names as of its position, however
        far the parse stage has run ahead.
    """

    def __init__(
        self,
        feed: protocols.Feed[Any],
        position: Position,
        *,
        names: NamerState,
        core: Any,
        checkpointer: Checkpointer | None,
        clock: Callable[[], float],
    ) -> None:
        self.feed = feed
        self.core = core
        self.position = position
        self.names = names
        self.checkpointer = checkpointer
        self.clock = clock
        self.log = get_logger()

    def cut(self) -> Cut:
        """The feed's piece of a checkpoint, with the source position it matches."""
        return Cut(InputRecord.at(self.position), self.feed.snapshot(), self.names)

    async def run(
        self, receive: ObjectReceiveStream[Batch], send: ObjectSendStream[Batch], health: Health
    ) -> None:
        """Order every batch received; wake up for gap timeouts and due checkpoints."""
        feed = self.feed
        checkpointer = self.checkpointer
        changed = False  # since the last checkpoint: an idle run has nothing new to record
        async with receive, send:
            while True:
                batch = None
                deadline = feed.deadline()
                if changed and checkpointer is not None:
                    due = checkpointer.next_due
                    deadline = due if deadline is None else min(deadline, due)
                health.done("feed")
                try:
                    with anyio.move_on_after(_until(deadline, self.clock())):
                        batch = await receive.receive()
                except anyio.EndOfStream:
                    # Stopped: what waits for a gap stays unapplied (SPEC §8), but is kept in
                    # the final checkpoint so that a restart carries on with it.
                    if checkpointer is not None:
                        await send.send(Batch(cut=self.cut()))
                    return
                now = health.take("feed")
                ready = self.core.events()
                if batch is None:  # a gap timed out, or a checkpoint is due
                    out = Batch()
                    feed.expire(now, ready)
                    changed = changed or bool(ready)
                else:
                    changed = True
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
                self._log_gaps()
                out.events = ready
                if (
                    checkpointer is not None
                    and changed
                    and (now >= checkpointer.next_due or out.end_of_input)
                ):
                    out.cut = self.cut()
                    changed = False
                if (
                    ready
                    or out.rejects
                    or out.end_of_input
                    or out.cut
                    or out.layout
                    or out.caught_up
                ):
                    await send.send(out)

    def _log_gaps(self) -> None:
        for first, last in self.feed.skipped:
            self.log.warning("gap_skipped", first_seq=first, last_seq=last, lost=last - first + 1)
        self.feed.skipped.clear()


def instruments_not_seen(
    listed: tuple[str, ...], instruments: protocols.Instruments[Any, Any], namer: MboNamer
) -> list[str]:
    """The instruments of ``--instruments`` of which no event was applied (a book of
    Databento's is named by the namer, its key being no name), in the order listed."""
    seen = instruments.names() | namer.matched
    return [name for name in listed if name not in seen]


class ApplyStage:
    """Events onto the books; the quotes they write (SPEC §2, §3, §9, §12).

    :param namer: names the quotes of Databento's books (keyed by publisher and instrument_id)
        by their symbol on their day.
    :param listed: the instruments to keep (``--instruments``): at the end of the input, those
        never met are warned about (``instruments_not_seen``), once.
    """

    def __init__(
        self,
        instruments: protocols.Instruments[Any, Any],
        namer: MboNamer,
        *,
        core: Any,
        listed: tuple[str, ...] | None = None,
    ) -> None:
        self.instruments = instruments
        self.namer = namer
        self.core = core
        self.listed = listed
        self.log = get_logger()

    async def run(
        self, receive: ObjectReceiveStream[Batch], send: ObjectSendStream[Batch], health: Health
    ) -> None:
        """Apply every batch received and send its quotes on."""
        instruments = self.instruments
        async with receive, send:
            async for batch in receive:
                health.take("apply")
                anomalies: list[tuple[str, Event]] = []
                if batch.events:
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
                            hint="no event of these --instruments was met in the input: check"
                            " their spelling (names are case-sensitive)",
                        )
                batch.events = []
                await send.send(batch)
                health.done("apply")


class WriteStage:
    """Quotes and rejects to their sinks, flushed by size and age; checkpoints saved.

    ``damage`` is the error that ended the input early (`Batch.damage`), once the batch that
    carries it was written: the run fails with it after this stage has finished.
    """

    def __init__(
        self,
        writer: Writer,
        *,
        checkpointer: Checkpointer | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.writer = writer
        self.checkpointer = checkpointer
        self.clock = clock
        self.damage: InputError | None = None

    async def run(self, receive: ObjectReceiveStream[Batch], health: Health) -> None:
        """Write every batch received; flush and close the sinks at the end, even when
        cancelled, within a deadline so that a stuck disk cannot hold shutdown forever."""
        writer = self.writer
        try:
            async with receive:
                while True:
                    batch = None
                    health.done("write")
                    try:
                        with anyio.move_on_after(_until(writer.deadline(), self.clock())):
                            batch = await receive.receive()
                    except anyio.EndOfStream:
                        return
                    now = health.take("write")
                    if batch is not None:
                        if batch.layout is not None:
                            writer.output.set_layout(*batch.layout)
                        writer.add(batch.quotes, batch.rejects, now)
                        if batch.damage is not None:
                            self.damage = batch.damage
                    if batch is not None and batch.cut is not None and self.checkpointer:
                        await self.checkpointer.save(batch.cut, now)
                    else:
                        if batch is not None and batch.caught_up and writer.holds_rows:
                            await writer.flush(now, sync=True)  # nothing more to wait for
                        await writer.flush_if_due(now)
                        if writer.cut_wanted and self.checkpointer is not None:
                            self.checkpointer.request()
        finally:
            with anyio.move_on_after(FINAL_FLUSH_TIMEOUT, shield=True):
                try:
                    await writer.finish(self.clock())
                finally:
                    await writer.aclose()
