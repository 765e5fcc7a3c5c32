"""The compiled core against the Python core, the reference, on random streams (issue 11).

Each stream goes through the core's classes as the pipeline's stages drive them (parse, feed,
instruments, format), batch by batch, and must give byte-identical L1 text, the same rejects and
the same counters on both cores. A third run switches core at random batches through a snapshot
and restore, as a restart with another `--core` would: checkpoints are interchangeable.
The streams hold every reject reason of SPEC §4 and every anomaly of SPEC §3.
"""

from __future__ import annotations

import gzip
import os
import random
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from bench.generate_mbo import metadata, pack
from bench.generate_mbo import write as write_mbo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l3tol1.core import PythonCore, available, load
from l3tol1.core.csv_parser import REQUIRED_COLUMNS
from l3tol1.core.mbo import MboNamer
from l3tol1.core.records import Reason
from l3tol1.sources.dbn import read_metadata
from tests.conftest import REFERENCE_INPUT, cli
from tests.test_core_parser import BAD, GOOD
from tests.test_dbn import streams as mbo_streams

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


@st.composite
def csv_rows(draw: st.DrawFn, columns: list[str], seq: int) -> bytes:
    """One row of seq ``seq``: mostly good, sometimes with one bad value, sometimes junk."""
    if draw(st.integers(0, 30)) == 0:
        return draw(st.sampled_from(JUNK))
    values = dict.fromkeys(columns, "")
    values["seq_num"] = str(seq)
    values["time"] = draw(st.sampled_from(GOOD["time"]))
    if "instrument" in values:
        values["instrument"] = draw(st.sampled_from(INSTRUMENTS[:4] * 6 + INSTRUMENTS))
    action = draw(st.sampled_from(ACTIONS))
    values[f"{action}_order_id"] = draw(st.sampled_from(IDS))
    values[f"{action}_side"] = draw(st.sampled_from(GOOD["side"]))
    if action != "delete":
        values[f"{action}_price"] = draw(st.sampled_from(PRICES))
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
    lines = [draw(csv_rows(columns, seq)) for seq in seqs]
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
        python, compiled = PythonCore(), load("compiled")
        batches = len(case.cuts) + 1
        assert convert_csv([compiled] * batches, case) == convert_csv([python] * batches, case)
        again = PythonCore()  # a restart on the Python core
        restarted = convert_csv([again if s else python for s in case.switch], case)
        assert convert_csv([compiled if s else python for s in case.switch], case) == restarted

    def test_the_streams_hold_every_reason_and_anomaly(self) -> None:
        """The generator is rich enough: over a fixed sample, every reject reason of the CSV
        path and every anomaly appear (so the property above is not vacuous)."""
        seen: dict[str, set[str]] = {"reasons": set(), "anomalies": set()}
        rows = []

        @settings(max_examples=150, derandomize=True, database=None, deadline=None)
        @given(csv_cases())
        def collect(case: CsvCase) -> None:
            result = convert_csv([PythonCore()] * (len(case.cuts) + 1), case)
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
        """DBN records in random batches: same L1 text, rejects and counters by action."""
        data = [pack(r) for r in recs]
        python = convert_mbo(PythonCore(), data, sorted(cuts), keep)
        assert convert_mbo(load("compiled"), data, sorted(cuts), keep) == python


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


class TestDamagedInputThroughTheCli:
    """Damaged input (issue 17): the real CLI on each core, on the same damaged files, gives
    the same rows, rejects, exit status and error line."""

    def outcome(self, src: Path, out: Path, core: str, *args: str) -> tuple[Any, ...]:
        result = cli("-i", src, "-o", out, "--no-follow", "--core", core, *args)
        rejects = Path(f"{out}.rejects.jsonl").read_bytes()
        return result.returncode, result.stderr.splitlines()[-1], out.read_bytes(), rejects

    def test_both_cores_agree(self, tmp_path: Path) -> None:
        """A gzip file cut short (with and without --start-seq, and with rows that are
        rejected) and a DBN file cut inside a record."""
        text = REFERENCE_INPUT.read_bytes().splitlines(keepends=True)
        for i in range(5, len(text), 997):  # some bad rows among the good ones
            text[i] = b"junk," + text[i]
        packed = gzip.compress(b"".join(text))
        mbo = tmp_path / "mbo.dbn"
        write_mbo(str(mbo), 3000, seed=5)
        cases = [
            ("cut.gz", packed[: len(packed) // 3], []),
            ("cut.gz", packed[: len(packed) * 2 // 3], ["--start-seq", "1627942268920653171"]),
            ("cut.dbn", mbo.read_bytes()[:-29], ["--instruments", "ESH4"]),
        ]
        for name, data, args in cases:
            src = tmp_path / name
            src.write_bytes(data)
            python = self.outcome(src, tmp_path / "python.csv", "python", *args)
            compiled = self.outcome(src, tmp_path / "compiled.csv", "compiled", *args)
            assert python[0] == 2 and python[2].count(b"\n") > 50, python[1]
            assert compiled == python, name
