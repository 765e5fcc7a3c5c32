"""The compiled core against the Python core, the reference, on random streams (issue 11).

Each stream goes through the core's classes as the pipeline's stages drive them (parse, feed,
instruments, format), batch by batch, and must give byte-identical L1 text, the same rejects and
the same counters on both cores. A third run switches core at random batches through a snapshot
and restore, as a restart with another `--core` would: checkpoints are interchangeable.
The streams hold every reject reason of SPEC §4 and every anomaly of SPEC §3.
"""

from __future__ import annotations

import os
import random
import struct
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from bench.generate_mbo import metadata, pack, records, symbols_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l3tol1.checkpoint import Checkpoint, InputRecord, RunOptions, decode, encode
from l3tol1.core import available, load
from l3tol1.core.csv_parser import REQUIRED_COLUMNS
from l3tol1.core.mbo import MboMetadata
from l3tol1.core.naming import MboNamer
from l3tol1.core.records import Action, Reason, Side
from l3tol1.core.schemas import SCHEMAS
from l3tol1.errors import InputError
from l3tol1.sinks.csv import CsvState
from l3tol1.sinks.files import FileRecord
from l3tol1.sinks.rejects import RejectsState
from l3tol1.sources.dbn import RecordSplitter, read_metadata
from tests.mbo import streams as mbo_streams
from tests.unit.test_core_parser import BAD, GOOD

pytestmark = pytest.mark.skipif(not available(), reason="the compiled core was not built")

MAX_LINE = 300  # small, so that `line too long` is common
INSTRUMENTS = ["ESZ6", "NQZ6", "é", '"a,b"', "", "x" * 65]  # the last two are bad
IDS = ["1", "2", "3", "01", "é"]
PRICES = ["100", "100.25", "99.5", "101", "0.000000001", "9223372036.854775807", "100.250"]
QTYS = ["0", "1", "2", "5", "300.0", "4294967295"]
ACTIONS = ["add", "update", "delete", "trade"]
# More examples for a long run: L3TOL1_FUZZ_EXAMPLES=5000 (the CSV test; MBO gets two thirds).
EXAMPLES = int(os.environ.get("L3TOL1_FUZZ_EXAMPLES", "300"))
JUNK = [b"", b"garbage", b"1,2,3", b"\xff\xfe,\x80", b"9" * (MAX_LINE + 5)]


# Books deeper than ten levels: many prices and orders (one case in four).
DEEP_PRICES = [f"{100 + i * 0.25:g}" for i in range(-20, 21)]
DEEP_IDS = [str(i) for i in range(80)]
# Times over several seconds and minutes, some going back: sampled intervals end mid-stream.
TIMES = [
    *GOOD["time"],
    "2021-08-03 01:00:04.5 UTC",
    "2021-08-03 01:00:05.999999 UTC",
    "2021-08-03 01:01:10 UTC",
    "2021-08-03 01:02:00.000001 UTC",
    "2021-08-03 00:59:59.999999 UTC",
]


@st.composite
def csv_rows(draw: st.DrawFn, columns: list[str], seq: int, deep: bool = False) -> bytes:
    """One row of seq ``seq``: mostly good, sometimes with one bad value, sometimes junk."""
    if draw(st.integers(0, 30)) == 0:
        return draw(st.sampled_from(JUNK))
    values = dict.fromkeys(columns, "")
    values["seq_num"] = str(seq)
    values["time"] = draw(st.sampled_from(TIMES))
    if "instrument" in values:
        values["instrument"] = draw(st.sampled_from(INSTRUMENTS[:4] * 6 + INSTRUMENTS))
    action = draw(st.sampled_from(["add", "add", "update", *ACTIONS] if deep else ACTIONS))
    values[f"{action}_order_id"] = draw(st.sampled_from(DEEP_IDS if deep else IDS))
    values[f"{action}_side"] = draw(st.sampled_from(GOOD["side"]))
    if action != "delete":
        values[f"{action}_price"] = draw(st.sampled_from(DEEP_PRICES if deep else PRICES))
        values[f"{action}_qty"] = draw(st.sampled_from(QTYS))
    if draw(st.integers(0, 40)) == 0:  # a second action's order id
        values[f"{draw(st.sampled_from([a for a in ACTIONS if a != action]))}_order_id"] = "x"
    elif draw(st.integers(0, 8)) == 0:
        kind = draw(st.sampled_from(sorted(BAD)))
        column = {"seq": "seq_num", "time": "time", "id": f"{action}_order_id"}.get(
            kind, f"{draw(st.sampled_from(ACTIONS))}_{kind}"
        )
        values[column] = draw(st.sampled_from(BAD[kind]))
    text = ",".join(values[c] for c in columns) + draw(st.sampled_from(["", "", "", "\r"]))
    return text.encode()


@dataclass
class CsvCase:
    header: str
    lines: list[bytes]
    cuts: list[int]  # batch boundaries, in lines
    feed: dict[str, Any]
    keep: list[str] | None
    switch: list[bool] = field(default_factory=list)  # per batch: restart on the other core


@st.composite
def csv_cases(draw: st.DrawFn) -> CsvCase:
    """A feed of displaced, duplicated, late and missing seqs over a few orders and levels."""
    columns = list(draw(st.permutations(REQUIRED_COLUMNS)))
    if draw(st.booleans()):
        columns.insert(draw(st.integers(0, len(columns))), "instrument")
    count = draw(st.integers(0, 150))
    window = draw(st.sampled_from([0, 3, 20]))
    rng = random.Random(draw(st.integers(0, 2**32)))
    seqs = sorted(range(100, 100 + count), key=lambda i: i + rng.uniform(0, window))
    seqs = [s for s in seqs if rng.random() > 0.03]  # gaps
    for _ in range(count // 15):  # duplicates and late rows
        seqs.insert(rng.randrange(len(seqs) + 1), rng.choice(seqs or [5]) - rng.choice([0, 40]))
    deep = draw(st.integers(0, 3)) == 0
    lines = [draw(csv_rows(columns, seq, deep)) for seq in seqs]
    cuts = sorted(draw(st.lists(st.integers(0, len(lines)), max_size=6)))
    feed: dict[str, Any] = {"max_pending": draw(st.sampled_from([1, 4, 100_000]))}
    if draw(st.booleans()):
        feed["start_seq"] = draw(st.sampled_from([0, 100, 110]))
    if draw(st.booleans()):
        feed["gap_timeout"] = draw(st.sampled_from([0.5, 2.0]))
    keep = draw(st.sampled_from([None, ["ESZ6"], ["NQZ6", "a,b", "absent"]]))
    switch = draw(st.lists(st.booleans(), min_size=len(cuts) + 1, max_size=len(cuts) + 1))
    return CsvCase(",".join(columns), lines, cuts, feed, keep, switch)


@dataclass
class Result:
    events: list = field(default_factory=list)  # as applied: every field the rows read
    text: str = ""
    rejects: list = field(default_factory=list)
    anomalies: list = field(default_factory=list)
    counters: dict[str, Any] = field(default_factory=dict)


class CsvRun:
    """One core's classes, driven as the stages drive them; `restart` moves them to a core."""

    def __init__(self, core: Any, case: CsvCase) -> None:
        self.case = case
        self.core = core
        self.parser = core.csv_parser(case.header, max_line=MAX_LINE)
        self.feed = core.feed(**case.feed)
        self.instruments = core.instruments(case.keep)
        self.formatter = core.formatter(with_instrument=self.parser.instrument_column is not None)
        self.skipped: list = []

    def restart(self, core: Any, now: float) -> None:
        """A stop and a start on ``core`` from the checkpoint's pieces (snapshots)."""
        feed, instruments, skipped = self.feed.snapshot(), self.instruments.snapshot(), self.skipped
        self.__init__(core, self.case)  # type: ignore[misc]
        self.skipped = skipped  # the log of gaps skipped, kept by the stage, not the core
        self.feed.restore(feed, now)
        self.instruments.restore(instruments)

    def batch(self, data: bytes, first_line: int, now: float, result: Result, end: bool) -> None:
        core, feed = self.core, self.feed
        ready = core.events()
        rejects: list = []
        if "gap_timeout" in self.case.feed:
            feed.expire(now, ready)  # as the feed stage does when it wakes up
        if data:
            events, rejects = self.parser.parse(data, first_line)
            feed.push(core.events(events) if type(events) is list else events, now, ready, rejects)
        if end:
            feed.finish(ready)
        quotes = core.quotes()
        anomalies: list = []
        result.events += [(e.seq, e.action, e.side, e.price, e.qty, e.ts_event) for e in ready]
        self.instruments.apply(ready, quotes, anomalies)
        result.text += self.formatter.format(quotes)
        result.rejects += sorted(rejects, key=lambda r: r.line)
        result.anomalies += [(kind, event.seq) for kind, event in anomalies]
        self.skipped += feed.skipped
        feed.skipped.clear()


def convert_csv(cores: list[Any], case: CsvCase) -> Result:
    """The stream through ``cores[i]`` for batch i (a restart wherever the core object
    changes)."""
    result = Result()
    run = CsvRun(cores[0], case)
    bounds = [0, *case.cuts, len(case.lines)]
    line = 2  # the header is line 1
    for i in range(len(bounds) - 1):
        if cores[i] is not run.core:
            run.restart(cores[i], float(i))
        chunk = case.lines[bounds[i] : bounds[i + 1]]
        data = b"".join(text + b"\n" for text in chunk)
        run.batch(data, line, float(i), result, end=i == len(bounds) - 2)
        line += len(chunk)
    feed, instruments = run.feed, run.instruments
    result.counters = {
        "feed": (feed.received, feed.late, feed.duplicate, feed.gaps_skipped, feed.seqs_lost),
        "skipped": run.skipped,
        "pending": feed.pending,
        "anomalies": dict(instruments.anomalies),
        "instruments": (instruments.applied, instruments.skipped, len(instruments)),
        "quotes": (instruments.crossed, instruments.locked, instruments.last_seq),
        "snapshot": (feed.snapshot(), same_order(instruments.snapshot())),
    }
    return result


def same_order(state: Any) -> Any:
    """A snapshot of the books with its lists sorted: their order is the core's own business (a
    level's total does not depend on it)."""
    for book in state.instruments:
        book.orders.sort()
    state.instruments.sort(key=lambda book: book.name)
    return state


class TestCsvStreams:
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(csv_cases())
    def test_both_cores_and_restarts_between_them_agree(self, case: CsvCase) -> None:
        """Same L1 text, rejects, anomalies and counters from the Python core and the compiled
        core; and a run that restarts on the other core at random batches gives what the same
        restarts on the Python core give (a restart's clock differs, so it may differ from a
        run without restarts in what the gap timeout skips)."""
        python, compiled = load("python"), load("compiled")
        batches = len(case.cuts) + 1
        assert convert_csv([compiled] * batches, case) == convert_csv([python] * batches, case)
        again = load("python")  # a restart on the Python core
        restarted = convert_csv([again if s else python for s in case.switch], case)
        assert convert_csv([compiled if s else python for s in case.switch], case) == restarted

    def test_the_streams_hold_every_reason_and_anomaly(self) -> None:
        """The generator is rich enough: over a fixed sample, every reject reason of the CSV
        path and every anomaly appear (so the property above is not vacuous)."""
        seen: dict[str, set[str]] = {"reasons": set(), "anomalies": set()}
        rows = []

        @settings(max_examples=200, derandomize=True, database=None, deadline=None)
        @given(csv_cases())
        def collect(case: CsvCase) -> None:
            result = convert_csv([load("python")] * (len(case.cuts) + 1), case)
            seen["reasons"] |= {r.reason for r in result.rejects}
            seen["anomalies"] |= set(result.counters["anomalies"])
            rows.append(result.text.count("\n"))

        collect()
        csv_reasons = set(Reason) - {Reason.RECORD, Reason.ACTION}  # those are Databento's
        assert seen["reasons"] == {str(r) for r in csv_reasons}
        assert len(seen["anomalies"]) >= 5 and sum(rows) > 100


class TestMboStreams:
    @settings(max_examples=EXAMPLES * 2 // 3, deadline=None)
    @given(mbo_streams(), st.lists(st.integers(0, 120), max_size=5), st.booleans())
    def test_both_cores_agree(self, recs: list, cuts: list[int], keep: bool) -> None:
        """DBN records in random batches: same events (ts_event, price), L1 text, rejects and
        counters by action."""
        data = [pack(r) for r in recs]
        python = convert_mbo(load("python"), data, sorted(cuts), keep)
        assert convert_mbo(load("compiled"), data, sorted(cuts), keep) == python

    def test_many_books_over_days(self) -> None:
        """Three hundred books (two publishers, most instruments not in the metadata: named by
        their id) over two days, in batches: the compiled core's tables of the books met and of
        their names by day grow, and give the reference's events, rows, names and rejects."""
        books = records(20_000, seed=5, publishers=(1, 2), symbols=symbols_of(150))
        data = [pack(r) for r in books]
        cuts = list(range(1500, len(data), 1500))
        python = convert_mbo(load("python"), data, cuts, False)
        assert convert_mbo(load("compiled"), data, cuts, False) == python
        for name in (",ESH4,", ",NEWSYM,", ",OLDSYM@2,", ",1150,", ",1150@2,"):
            assert name in python.text

    def test_the_streams_hold_the_schemas_fields(self) -> None:
        """The generator is rich enough: trades, fills and nones with each side, undefined
        prices kept, ts_event apart from ts_recv, and side N refused on an order's action."""
        seen: set[tuple[str, object]] = set()

        @settings(max_examples=100, derandomize=True, database=None, deadline=None)
        @given(mbo_streams())
        def collect(recs: list) -> None:
            result = convert_mbo(load("python"), [pack(r) for r in recs], [], False)
            for e in result.events:
                seen.add(("action side", (e.action, e.side)))
                seen.add(("undefined price", e.price == 2**63 - 1))
                seen.add(("ts_event", (e.ts_event > e.time) - (e.ts_event < e.time)))
            seen.update(("reason", r.reason) for r in result.rejects)

        collect()
        for action in (Action.PRINT, Action.FILL, Action.NONE):
            assert {("action side", (action, side)) for side in Side} <= seen
        assert {("undefined price", True), ("reason", "bad side"), ("reason", "bad price")} <= seen
        assert {("ts_event", -1), ("ts_event", 0), ("ts_event", 1)} <= seen


def convert_mbo(core: Any, records: list[bytes], cuts: list[int], keep: bool) -> Result:
    found = read_metadata(metadata(), "test")
    assert found is not None
    names = frozenset(["ESH4", "NEWSYM@2"]) if keep else None  # --instruments
    namer = MboNamer(names)
    parser = core.mbo_parser(found[0], namer)
    instruments = core.instruments(names, kept=namer.kept)
    formatter = core.formatter(with_instrument=True)
    result = Result()
    bounds = [0, *[c for c in cuts if c <= len(records)], len(records)]
    for start, end in pairwise(bounds):
        events, rejects = parser.parse(b"".join(records[start:end]), start + 1)
        if type(events) is list:
            events = core.events(events)
        result.events += list(events)  # ts_event, price (undefined too), side N, T/F/N
        quotes = core.quotes()
        anomalies: list = []
        instruments.apply(events, quotes, anomalies)
        result.text += formatter.format(namer.name_quotes(quotes))
        result.rejects += rejects
        result.anomalies += [(kind, event.seq) for kind, event in anomalies]
    result.counters = {
        "by_action": dict(sorted(parser.by_action.items())),
        "anomalies": dict(instruments.anomalies),
        "instruments": (instruments.applied, instruments.skipped, len(instruments)),
        "quotes": (instruments.crossed, instruments.locked),
        "snapshot": same_order(instruments.snapshot()),
    }
    return result


# -- DBN records at their extremes, and records of every type (issue 17) --------------------------

T0 = 1_703_541_600_000_000_000
DAY = 86_400 * 10**9
MBO = struct.Struct("<BBHIQQqIBBccQiI")
# Each integer field of an MBO record: 0, -1, -2^63, 2^63 - 1, 2^64 - 1 as its type allows, among
# common values (repeated: drawn more often) so that books fill and rows are written.
EXTREMES = {
    "publisher": [0, *[1] * 6, 2, 2**16 - 1],
    "instrument": [0, *[1001] * 6, 1002, 1003, 1004, 2**32 - 1],
    "order_id": [0, 1, 2, 3, 4, 5, 2**63 - 1, 2**64 - 1],
    "price": [0, -1, -(2**63), -(2**63), -(2**63) + 1, 2**63 - 2, 2**63 - 1, 10**9, -(10**9)],
    "size": [0, *[1] * 4, 2, 5, 2**31, 2**32 - 1],
    "flags": [0, *[0x80] * 6, 0xFF, 0x7F],
    "ts_recv": [0, 1, *[T0] * 6, T0 + 5, T0 + DAY, T0 + 3 * DAY, 2**63 - 1, 2**63, 2**64 - 1],
    "ts_in_delta": [0, -(2**31), 2**31 - 1],
    "sequence": [0, 1, 2**31, 2**32 - 1],
}
SYMBOL_TEXTS = [b"ESH4", b"LIVE", b"", "é".encode(), b"\xff\xfe", b"a,b", b'q"t', b"x" * 80]


def u64(draw: st.DrawFn) -> int:
    return draw(st.sampled_from([0, 1, 2**63 - 1, 2**63, 2**64 - 1]))


@st.composite
def dbn_record(draw: st.DrawFn, ts_out: bool) -> bytes:
    """One DBN record: mostly MBO with fields at their extremes and any action and side byte;
    else a symbol mapping (v1 or v2 layout, any symbol bytes), a system or error record, a
    record of any other rtype and length, an MBO record of the wrong length, or (rarely) a
    length below the record header (damage)."""
    tail = u64(draw).to_bytes(8, "little") if ts_out else b""
    kind = draw(st.sampled_from("M" * 40 + "SSSEEXXLL" + "D" * (draw(st.integers(0, 4)) == 0)))

    def pick(field: str) -> int:
        return draw(st.sampled_from(EXTREMES[field]))

    def record(rtype: int, body: bytes) -> bytes:
        whole = body + tail
        return bytes((len(whole) // 4, rtype)) + whole[2:]

    header = struct.pack("<BBHIQ", 0, 0, pick("publisher"), pick("instrument"), u64(draw))
    if kind == "M" or kind == "L":
        action = draw(st.sampled_from([*b"AAAAAAMMCCCRTFN", draw(st.integers(0, 255))]))
        side = draw(st.sampled_from([*b"BBBAAAN", draw(st.integers(0, 255))]))
        body = MBO.pack(
            0, 0, pick("publisher"), pick("instrument"), pick("ts_recv"), pick("order_id"),
            pick("price"), pick("size"), pick("flags"), draw(st.integers(0, 255)),
            bytes((action,)), bytes((side,)), pick("ts_recv"), pick("ts_in_delta"),
            pick("sequence"),
        )  # fmt: skip
        if kind == "L":  # another length than the metadata's
            words = draw(st.sampled_from([4, 5, 13, 15, 16, 255]))
            body = (body + bytes(1024))[: words * 4 - len(tail)]
        return record(0xA0, body)
    if kind == "S":
        symbol = draw(st.sampled_from(SYMBOL_TEXTS))
        if draw(st.booleans()):  # v1: 22-byte symbols
            body = header + b"ES.FUT".ljust(22, b"\0") + symbol[:22].ljust(22, b"\0") + bytes(20)
        else:
            body = header + b"\x01" + b"ES.FUT".ljust(71, b"\0") + b"\x02"
            body += symbol[:71].ljust(71, b"\0") + bytes(16)
        if not draw(st.integers(0, 15)):  # neither layout's size
            body += bytes(4)
        return record(0x16, body)
    if kind == "E":
        text = draw(st.sampled_from(SYMBOL_TEXTS)) + b" went wrong"
        size = draw(st.sampled_from([64, 302]))
        return record(
            draw(st.sampled_from([0x15, 0x17])),
            header + text[:size].ljust(size + (size == 302) * 2, b"\0"),
        )
    if kind == "X":  # any other rtype, any length
        words = draw(st.integers(4, 255))
        filler = draw(st.binary(min_size=words * 4, max_size=words * 4))
        rtype = draw(st.sampled_from([0x00, 0x12, 0x13, 0x18, 0xA1, 0xFF]))
        return bytes((words, rtype)) + filler[2:]
    return bytes((draw(st.integers(0, 3)), 0xA0)) + bytes(14)  # "D": shorter than a header


@dataclass
class DbnCase:
    ts_out: bool
    records: list[bytes]
    cuts: list[int]  # where the byte stream is cut into chunks
    keep: list[str] | None
    restart: list[bool]  # per chunk: a restart (on the other core) before it


@st.composite
def dbn_cases(draw: st.DrawFn) -> DbnCase:
    ts_out = draw(st.booleans())
    recs = [draw(dbn_record(ts_out)) for _ in range(draw(st.integers(0, 80)))]
    size = sum(len(r) for r in recs)
    cuts = sorted(draw(st.lists(st.integers(0, size), max_size=5)))
    keep = draw(st.sampled_from([None, ["ESH4", "LIVE@2", "0", "1003"]]))
    restart = draw(st.lists(st.booleans(), min_size=len(cuts) + 1, max_size=len(cuts) + 1))
    return DbnCase(ts_out, recs, cuts, keep, restart)


class DbnRun:
    """One core's classes as the stages drive them: the splitter, the parser, the books, the
    namer (`restart` moves them to a core through a real checkpoint's bytes)."""

    def __init__(self, core: Any, case: DbnCase, metadata: Any) -> None:
        self.core, self.case, self.metadata = core, case, metadata
        keep = None if case.keep is None else frozenset(case.keep)
        self.namer = MboNamer(keep)
        self.parser = core.mbo_parser(metadata, self.namer)
        self.instruments = core.instruments(keep, kept=self.namer.kept)
        self.formatter = core.formatter(with_instrument=True)

    def restart(self, core: Any) -> None:
        saved = Checkpoint(
            options=RunOptions(None, 100_000, None),
            input=InputRecord("in.dbn", 1, 2, 0, "", 0, 0),
            feed=core.feed().snapshot(),
            instruments=self.instruments.snapshot(),
            output=CsvState(FileRecord("out.csv", 1, 3, 0), 0, True),
            rejects=RejectsState(FileRecord("out.csv.rejects.jsonl", 1, 4, 0)),
            names=self.namer.snapshot(),
        )
        loaded = decode(encode(saved), Path("state.ckpt"))  # the codec takes every value
        assert loaded.names == saved.names
        self.__init__(core, self.case, self.metadata)  # type: ignore[misc]
        self.namer.restore(loaded.names)
        self.instruments.restore(loaded.instruments)

    def batch(self, lines: Any, result: Result) -> None:
        events, rejects = self.parser.parse(lines.data, lines.first_line)
        if type(events) is list:
            events = self.core.events(events)
        result.events += list(events)
        result.rejects += rejects
        result.errors += self.parser.errors
        self.parser.errors.clear()
        quotes = self.core.quotes()
        anomalies: list = []
        self.instruments.apply(events, quotes, anomalies)
        result.text += self.formatter.format(self.namer.name_quotes(quotes))
        result.anomalies += [(kind, event.line) for kind, event in anomalies]
        if self.namer.changed:
            result.names.append(self.namer.snapshot())
            self.namer.changed = False


@dataclass
class DbnResult(Result):
    errors: list = field(default_factory=list)
    names: list = field(default_factory=list)
    damage: str = ""


def convert_dbn(cores: list[Any], case: DbnCase) -> DbnResult:
    """The records through ``cores[i]`` for chunk i, cut by the real splitter (a restart
    wherever the core object changes)."""
    head = metadata(ts_out=case.ts_out)
    found = read_metadata(head, "test")
    assert found is not None
    meta = found[0]
    data = b"".join(case.records)
    splitter = RecordSplitter(meta.record_size, len(head), "in.dbn")
    result = DbnResult()
    run = DbnRun(cores[0], case, meta)
    bounds = [0, *case.cuts, len(data)]
    try:
        for i in range(len(bounds) - 1):
            if cores[i] is not run.core:
                run.restart(cores[i])
            run.batch(splitter.feed(data[bounds[i] : bounds[i + 1]]), result)
        run.batch(splitter.finish(), result)
    except InputError as exc:
        result.damage = str(exc)
    result.counters = {
        "instruments": (run.instruments.applied, run.instruments.skipped, len(run.instruments)),
        "quotes": (run.instruments.crossed, run.instruments.locked),
        "anomalies": dict(run.instruments.anomalies),
        "snapshot": same_order(run.instruments.snapshot()),
        "names": run.namer.snapshot(),
    }
    if all(core is cores[0] for core in cores):  # a restart starts its parser's counts again
        result.counters["by_action"] = dict(sorted(run.parser.by_action.items()))
        result.counters["by_type"] = run.parser.by_type
    return result


class TestCorruptedDbn:
    @settings(
        max_examples=EXAMPLES * 2 // 3, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    @given(dbn_cases())
    def test_both_cores_and_restarts_between_them_agree(self, case: DbnCase) -> None:
        """Records of every type, MBO fields at their extremes (0, -1, -2^63, 2^63 - 1,
        2^64 - 1), any action and side byte, any rtype and length, cut anywhere: the same
        events, rejects, rows, counters, names, damage and books from both cores; and a run
        that restarts on the other core (through a checkpoint's bytes) at random chunks gives
        the rows of the run without restarts."""
        python, compiled = load("python"), load("compiled")
        chunks = len(case.cuts) + 1
        reference = convert_dbn([python] * chunks, case)
        assert convert_dbn([compiled] * chunks, case) == reference
        switched = convert_dbn([compiled if s else python for s in case.restart], case)
        assert (switched.text, switched.rejects, switched.damage) == (
            reference.text,
            reference.rejects,
            reference.damage,
        )
        assert switched.counters["snapshot"] == reference.counters["snapshot"]
        assert switched.counters["names"] == reference.counters["names"]

    def test_the_cases_reach_every_path(self) -> None:
        """The generator is rich enough: over a fixed sample, every reject reason of DBN
        records, damage, in-band names, error texts, prices at -2^63 in a row, and records of
        other types appear."""
        seen: dict[str, set] = {"reasons": set(), "types": set()}
        found = {"damage": 0, "errors": 0, "names": 0, "low": 0}

        @settings(max_examples=200, derandomize=True, database=None, deadline=None)
        @given(dbn_cases())
        def collect(case: DbnCase) -> None:
            result = convert_dbn([load("python")] * (len(case.cuts) + 1), case)
            seen["reasons"] |= {r.reason for r in result.rejects}
            seen["types"] |= set(result.counters.get("by_type", {}))
            found["damage"] += bool(result.damage)
            found["errors"] += len(result.errors)
            found["names"] += any(n.mappings for n in result.names)
            found["low"] += "-9223372036.854775808" in result.text

        collect()
        assert seen["reasons"] == {"bad record", "bad time", "bad action", "bad side", "bad price"}
        assert {"mbo", "symbol_mapping", "system", "error"} < seen["types"], seen["types"]
        assert all(found.values()), found

    @settings(max_examples=EXAMPLES, deadline=None)
    @given(st.binary(max_size=600), st.sampled_from([56, 64]))
    def test_any_bytes_given_to_the_parsers(self, data: bytes, size: int) -> None:
        """Bytes that are not whole records (the splitter never hands such): both parsers
        give the same events and rejects, and never read past the block."""
        meta = MboMetadata("test", size)
        out = []
        for core in (load("python"), load("compiled")):
            events, rejects = core.mbo_parser(meta, MboNamer()).parse(data, 1)
            out.append((list(events), rejects))
        assert out[0] == out[1]


# -- the other fields at their extremes: seqs at 2^64 - 1, Databento's CSV export (issue 17) ------


class TestExtremeSeqs:
    @pytest.mark.parametrize("start", [None, 2**64 - 3, 0])
    def test_the_feed_past_the_last_seq(self, start: int | None) -> None:
        """After seq 2^64 - 1 every seq is behind (late or duplicate), on both cores: the
        compiled feed's next seq must not wrap to 0, nor its count of lost seqs (up to
        2^64 - 1) overflow; its state goes through a checkpoint."""
        from tests.conftest import HEADER, add

        seqs = [2**64 - 3, 2**64 - 1, 2**64 - 2, 0, 5, 2**64 - 1, 1]
        rows = [add(s, f"o{i}", "BUY" if i % 2 else "SELL", str(100 + i if i % 2 else 200 - i), "1")
                for i, s in enumerate(seqs)]  # fmt: skip
        data = "".join(r + "\n" for r in rows).encode()
        out = []
        for core in (load("python"), load("compiled")):
            parser, feed = core.csv_parser(HEADER), core.feed(start_seq=start, max_pending=2)
            events, rejects = parser.parse(data, 2)
            ready = core.events()
            feed.push(
                events if type(events) is not list else core.events(events), 0.0, ready, rejects
            )
            feed.finish(ready)
            state = feed.snapshot()
            again = core.feed(start_seq=start)
            again.restore(_through_codec(state), 0.0)
            released = [e._replace(raw="") for e in ready]  # a waiting event keeps no raw line
            out.append((released, rejects, state, again.snapshot(), feed.seqs_lost))
        assert out[0] == out[1]
        assert out[0][2].next_seq == 2**64 and [r.reason for r in out[0][1]].count("duplicate") >= 1

    @pytest.mark.parametrize(
        ("column", "value", "reason"),
        [
            ("size", "4294967296", "bad qty"), ("size", "18446744073709551616", "bad qty"),
            ("sequence", "-1", "bad record"), ("sequence", "4294967296", "bad record"),
            ("publisher_id", "65536", "bad record"), ("instrument_id", "-5", "bad record"),
            ("order_id", "18446744073709551616", "bad record"), ("flags", "256", "bad record"),
            ("ts_recv", "18446744073709551615", "bad time"),
            ("ts_recv", "9223372036854775808", "bad time"),
            ("ts_recv", "1900-01-01T00:00:00.000000000Z", "bad time"), ("ts_recv", "", "bad time"),
            ("ts_event", "18446744073709551615", "bad time"), ("ts_event", "", None),
            ("ts_event", "9223372036854775807", None), ("ts_event", "0", None),
            ("price", "-9223372036854775808", "bad price"),
            ("price", "-9223372036.854775807", None), ("sequence", "4294967295", None),
            ("size", "4294967295", None), ("ts_recv", "9223372036854775807", None),
        ],
    )  # fmt: skip
    def test_the_csv_export_at_its_extremes(
        self, column: str, value: str, reason: str | None
    ) -> None:
        """Databento's CSV export with a field beyond its DBN type: rejected with its reason by
        both cores (never an overflow in the compiled core's containers); at the type's limit:
        the same row from both."""
        from l3tol1.core.mbo_csv import MboCsvParser

        header = (
            "ts_recv,ts_event,rtype,publisher_id,instrument_id,action,side,price,size,channel_id,"
            "order_id,flags,ts_in_delta,sequence,symbol"
        )
        names = header.split(",")
        good = {"ts_recv": str(T0), "ts_event": str(T0), "rtype": "160", "publisher_id": "1",
                "instrument_id": "1001", "side": "B", "price": "100", "size": "1",
                "channel_id": "0", "order_id": "1", "flags": "128", "ts_in_delta": "0",
                "sequence": "1", "symbol": "ESH4"}  # fmt: skip
        rows = [
            {**good, "action": "A"},
            {**good, "action": "A", "side": "A", "price": "9223372036854775806", "order_id": "2"},
        ]
        rows.append({**good, "action": "A", "order_id": "3", "price": "50", column: value})
        data = "".join(",".join(r[n] for n in names) + "\n" for r in rows).encode()
        out = []
        for core in (load("python"), load("compiled")):
            namer = MboNamer()
            events, rejects = MboCsvParser(header, namer).parse(data, 2)
            batch = core.events(events)
            quotes = core.quotes()
            instruments = core.instruments()
            instruments.apply(batch, quotes, [])
            out.append(
                (
                    list(batch),
                    rejects,
                    core.formatter(with_instrument=True).format(namer.name_quotes(quotes)),
                )
            )
        assert out[0] == out[1]
        assert [r.reason for r in out[0][1]] == ([] if reason is None else [reason])


def _through_codec(state: Any) -> Any:
    """A feed's state after a real checkpoint's bytes."""
    saved = Checkpoint(
        options=RunOptions(None, 100_000, None),
        input=InputRecord("in.csv", 1, 2, 0, "", 0, 0),
        feed=state,
        instruments=load("python").instruments().snapshot(),
        output=CsvState(FileRecord("out.csv", 1, 3, 0), 0, False),
        rejects=RejectsState(FileRecord("out.csv.rejects.jsonl", 1, 4, 0)),
    )
    return decode(encode(saved), Path("state.ckpt")).feed


# -- the output schemas (SPEC §14): both cores' rows, CSV bytes and books --------------------------

ROW_SCHEMAS = [name for name, schema in SCHEMAS.items() if schema.rows]


@dataclass
class RowsResult:
    rows: list = field(default_factory=list)
    text: str = ""
    anomalies: list = field(default_factory=list)
    counters: dict[str, Any] = field(default_factory=dict)


def through_checkpoint(state: Any, schema: str) -> Any:
    """A `DepthsState` after a real checkpoint's bytes."""
    saved = Checkpoint(
        options=RunOptions(None, 100_000, None, schema=schema),
        input=InputRecord("in.csv", 1, 2, 0, "", 0, 0),
        feed=load("python").feed().snapshot(),
        instruments=state,
        output=CsvState(FileRecord("out.csv", 1, 3, 0), 0, True),
        rejects=RejectsState(FileRecord("out.csv.rejects.jsonl", 1, 4, 0)),
    )
    return decode(encode(saved), Path("state.ckpt")).instruments


def depths_counters(depths: Any) -> dict[str, Any]:
    state = depths.snapshot()
    for d in state.depths:
        d.book.orders.sort()
    return {
        "counts": (depths.applied, depths.skipped, depths.crossed, depths.locked, len(depths)),
        "marks": (depths.last_seq, depths.gaps, depths.interval),
        "anomalies": dict(depths.anomalies),
        "names": depths.names(),
        "state": state,
    }


class CsvRowsRun:
    """One core's parser, feed and `Depths` for one schema, driven as the stages drive them
    (the gaps the feed declares in a batch marked on its rows); `restart` moves the books to a
    core through a checkpoint's bytes."""

    def __init__(self, core: Any, case: CsvCase, schema: str) -> None:
        self.core, self.case, self.schema = core, case, schema
        self.parser = core.csv_parser(case.header, max_line=MAX_LINE)
        self.feed = core.feed(**case.feed)
        self.depths = core.depths(SCHEMAS[schema], case.keep)
        self.formatter = core.row_formatter(
            SCHEMAS[schema], with_instrument=self.parser.instrument_column is not None
        )

    def restart(self, core: Any, now: float) -> None:
        feed, depths = self.feed.snapshot(), through_checkpoint(self.depths.snapshot(), self.schema)
        self.__init__(core, self.case, self.schema)  # type: ignore[misc]
        self.feed.restore(feed, now)
        self.depths.restore(depths)

    def batch(
        self, data: bytes, first_line: int, now: float, result: RowsResult, end: bool
    ) -> None:
        core, feed = self.core, self.feed
        ready = core.events()
        if "gap_timeout" in self.case.feed:
            feed.expire(now, ready)
        if data:
            events, rejects = self.parser.parse(data, first_line)
            feed.push(core.events(events) if type(events) is list else events, now, ready, rejects)
        if end:
            feed.finish(ready)
        gaps = [last + 1 for _, last in feed.skipped]  # as FeedStep marks them
        feed.skipped.clear()
        rows = core.rows()
        anomalies: list = []
        self.depths.apply(ready, rows, anomalies, gaps)
        if end:
            self.depths.finish(rows)
        result.rows += list(rows)
        result.text += self.formatter.format(rows)
        result.anomalies += [(kind, event.seq) for kind, event in anomalies]


def csv_rows_of(cores: list[Any], case: CsvCase, schema: str) -> RowsResult:
    result = RowsResult()
    run = CsvRowsRun(cores[0], case, schema)
    bounds = [0, *case.cuts, len(case.lines)]
    line = 2
    for i in range(len(bounds) - 1):
        if cores[i] is not run.core:
            run.restart(cores[i], float(i))
        chunk = case.lines[bounds[i] : bounds[i + 1]]
        run.batch(b"".join(t + b"\n" for t in chunk), line, float(i), result, i == len(bounds) - 2)
        line += len(chunk)
    result.counters = depths_counters(run.depths)
    return result


def mbo_rows_of(
    cores: list[Any], records: list[bytes], cuts: list[int], keep: bool, schema: str
) -> RowsResult:
    """DBN records in batches through ``cores[i]`` for batch i (a restart through a
    checkpoint's bytes wherever the core changes), named by the namer as the pipeline names
    them."""
    found = read_metadata(metadata(), "test")
    assert found is not None
    names = frozenset(["ESH4", "NEWSYM@2"]) if keep else None
    namer = MboNamer(names)
    core = cores[0]
    parser = core.mbo_parser(found[0], namer)
    depths = core.depths(SCHEMAS[schema], names, kept=namer.kept, name=namer.name)
    result = RowsResult()
    bounds = [0, *[c for c in cuts if c <= len(records)], len(records)]
    for i, (start, end) in enumerate(pairwise(bounds)):
        if cores[i] is not core:
            state = through_checkpoint(depths.snapshot(), schema)
            core = cores[i]
            parser = core.mbo_parser(found[0], namer)
            depths = core.depths(SCHEMAS[schema], names, kept=namer.kept, name=namer.name)
            depths.restore(state)
        events, _ = parser.parse(b"".join(records[start:end]), start + 1)
        if type(events) is list:
            events = core.events(events)
        rows = core.rows()
        anomalies: list = []
        depths.apply(events, rows, anomalies)
        if end == len(records):
            depths.finish(rows)
        result.rows += list(rows)
        result.text += core.row_formatter(SCHEMAS[schema], with_instrument=True).format(rows)
        result.anomalies += [(kind, event.seq) for kind, event in anomalies]
    result.counters = depths_counters(depths)
    return result


class TestSchemaRows:
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(csv_cases(), st.sampled_from(ROW_SCHEMAS))
    def test_csv_streams_give_the_same_rows(self, case: CsvCase, schema: str) -> None:
        """L3 CSV with gaps, anomalies, many instruments, deep books: the same rows, CSV bytes,
        anomalies, counters and books from both cores; and restarts on the other core at
        random batches (through a checkpoint) give what the same restarts on the Python core
        give."""
        python, compiled = load("python"), load("compiled")
        batches = len(case.cuts) + 1
        reference = csv_rows_of([python] * batches, case, schema)
        assert csv_rows_of([compiled] * batches, case, schema) == reference
        again = load("python")
        restarted = csv_rows_of([again if s else python for s in case.switch], case, schema)
        switched = csv_rows_of([compiled if s else python for s in case.switch], case, schema)
        assert switched == restarted

    @settings(max_examples=EXAMPLES * 2 // 3, deadline=None)
    @given(
        mbo_streams(),
        st.lists(st.integers(0, 120), max_size=5),
        st.booleans(),
        st.sampled_from(ROW_SCHEMAS),
        st.lists(st.booleans(), min_size=6, max_size=6),
    )
    def test_mbo_streams_give_the_same_rows(
        self, recs: list, cuts: list[int], keep: bool, schema: str, switch: list[bool]
    ) -> None:
        """DBN records (F_LAST grouping, T/F/N, clears, undefined prices, two publishers):
        the same rows and CSV bytes from both cores, and from a run that stops on one core
        and resumes on the other."""
        data = [pack(r) for r in recs]
        python, compiled = load("python"), load("compiled")
        cuts = sorted(cuts)
        reference = mbo_rows_of([python] * 6, data, cuts, keep, schema)
        assert mbo_rows_of([compiled] * 6, data, cuts, keep, schema) == reference
        switched = mbo_rows_of(
            [compiled if s else python for s in switch], data, cuts, keep, schema
        )
        assert (switched.rows, switched.text) == (reference.rows, reference.text)

    def test_the_cases_reach_every_flag_and_row_kind(self) -> None:
        """The generators are rich enough: every flag, trade rows, sampled rows with and
        without a trade, empty levels, and books ten levels deep appear."""
        seen: set[str] = set()

        @settings(max_examples=250, derandomize=True, database=None, deadline=None)
        @given(csv_cases(), st.sampled_from(ROW_SCHEMAS))
        def collect(case: CsvCase, schema: str) -> None:
            result = csv_rows_of([load("python")] * (len(case.cuts) + 1), case, schema)
            for row in result.rows:
                seen.update(f"flag {bit}" for bit in (1, 2, 4, 8) if row.flags & bit)
                seen.add(f"{schema} action {row.action or 'none'}")
                if None in row.levels:
                    seen.add("empty level")
            for depth in result.counters["state"].depths:  # a book ten levels deep: mbp-10 full
                for side in (0, 1):
                    if len({p for s, _, p, _ in depth.book.orders if s == side}) >= 10:
                        seen.add("ten levels")

        collect()
        flags = {f"flag {bit}" for bit in (1, 2, 4, 8)}
        kinds = {"mbp-1 action T", "tbbo action T", "bbo-1s action none", "bbo-1m action T"}
        assert flags | kinds | {"empty level", "ten levels"} <= seen, seen
