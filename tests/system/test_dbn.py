"""Databento MBO input (SPEC §12): DBN files (plain and zstd) and Databento's CSV export, through
the real CLI, against a naive MBO model; the official sample files; recordings of the live API
(symbol-mapping, system and error records among the MBO ones, DBN v1 to v3, made by Databento's
own encoder); fields at their extremes; kill -9 with a checkpoint. The records and files are
tests/mbo.py's."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import databento_dbn as dbn
import pytest
import zstandard
from bench.generate_mbo import RENAMED, SYMBOLS, UNDEF_PRICE, Mbo, metadata, pack, records
from databento_dbn import v1, v2, v3
from hypothesis import HealthCheck, given, settings

from tests.conftest import DATA, cli, first_difference, log_events, read_checkpoint
from tests.mbo import DAY, T0, mbo, streams, write_csv_export, write_dbn
from tests.model import mbo_model_csv
from tests.system.kills import kill_after_progress

DBN_SAMPLES = DATA / "dbn"  # copies of ../shared/data/dbn
CORES = ("python", "compiled")


def convert(tmp_path: Path, src: Path, *args: str) -> tuple[str, list[dict]]:
    out = tmp_path / f"{src.name}.l1.csv"
    result = cli("-i", src, "-o", out, "--no-follow", *args)
    assert result.returncode == 0, result.stderr
    rejects = [json.loads(line) for line in Path(f"{out}.rejects.jsonl").read_text().splitlines()]
    return out.read_text(), rejects


class TestScenarios:
    def rows(self, tmp_path: Path, recs: list[Mbo]) -> list[str]:
        text, _ = convert(tmp_path, write_dbn(tmp_path / "s.dbn", recs))
        assert text == mbo_model_csv(recs, SYMBOLS, RENAMED)
        return text.splitlines()[1:]

    def test_every_action(self, tmp_path: Path) -> None:
        """A adds, M modifies, C cancels part or all, R clears, T F N change nothing."""
        rows = self.rows(tmp_path, [
            mbo(1, "A", 1, "B", 4700, 5), mbo(2, "A", 2, "A", 4701, 3),
            mbo(3, "M", 1, "B", 4700.5, 2),
            mbo(4, "C", 2, "A", 4701, 1),
            mbo(5, "T", 0, "B", 4701, 1), mbo(6, "F", 2, "A", 4701, 1), mbo(7, "N", 0, "N", 0, 0),
            mbo(8, "C", 2, "A", 4701, 2),
            mbo(9, "A", 3, "A", 4702, 1),
            mbo(10, "R", 0, "N", UNDEF_PRICE, 0),
            mbo(11, "A", 4, "B", 1, 1), mbo(12, "A", 5, "A", 2, 1),
        ])  # fmt: skip
        assert [r.split(",", 1)[1] for r in rows] == [
            "ESH4,4700,4701,5,3,2", "ESH4,4700.5,4701,2,3,3", "ESH4,4700.5,4701,2,2,4",
            "ESH4,4700.5,4702,2,1,9", "ESH4,1,2,1,1,12",
        ]  # fmt: skip
        assert rows[0].startswith("2023-12-25 22:00:00.001000000 UTC,")  # nine digits

    def test_rows_only_after_the_last_record_of_a_venue_event(self, tmp_path: Path) -> None:
        """Intermediate states of one venue event never make a row."""
        rows = self.rows(tmp_path, [
            mbo(1, "A", 1, "B", 10, 1, last=False), mbo(2, "A", 2, "A", 11, 1, last=False),
            mbo(3, "A", 3, "B", 10.5, 1, last=True),
            mbo(4, "C", 3, "B", 10.5, 1, last=False), mbo(5, "A", 4, "B", 10.5, 1, last=True),
        ])  # fmt: skip
        assert [r.split(",", 1)[1] for r in rows] == ["ESH4,10.5,11,1,1,3"]

    def test_clear_then_snapshot(self, tmp_path: Path) -> None:
        """A clear empties the book; the snapshot's adds rebuild it; one row at its end."""
        snapshot = [mbo(10 + i, "A", 100 + i, "BA"[i % 2], 20 + i % 2, i + 1, last=i == 3)
                    for i in range(4)]  # fmt: skip
        rows = self.rows(tmp_path, [
            mbo(1, "A", 1, "B", 10, 1), mbo(2, "A", 2, "A", 11, 1),
            mbo(3, "R", 0, "N", UNDEF_PRICE, 0, last=False), *snapshot,
        ])  # fmt: skip
        assert [r.split(",", 1)[1] for r in rows] == ["ESH4,10,11,1,1,2", "ESH4,20,21,4,6,13"]

    def test_unknown_orders_and_fills_then_modifies(self, tmp_path: Path) -> None:
        """A modify of an unknown order inserts it; a cancel of one changes nothing; fills
        change nothing until the cancel or modify that follows."""
        self.rows(tmp_path, [
            mbo(1, "M", 9, "B", 10, 4), mbo(2, "C", 8, "A", 11, 1), mbo(3, "A", 2, "A", 11, 5),
            mbo(4, "F", 2, "A", 11, 2, last=False), mbo(5, "M", 2, "A", 11, 3),
            mbo(6, "C", 2, "A", 11, 99),
        ])  # fmt: skip

    def test_instruments_publishers_and_symbols_by_date(self, tmp_path: Path) -> None:
        """Each (publisher, instrument_id) is its own book; rows named by the symbol on their
        day (1003 is OLDSYM, then NEWSYM); a second publisher's rows get @publisher."""
        day = 86_400_000_000
        recs = []
        for i, (publisher, instrument, at) in enumerate(
            [(1, 1003, 0), (2, 1003, 0), (1, 1001, 0), (1, 1003, day), (2, 1003, day)]
        ):
            where = {"publisher": publisher, "instrument": instrument, "at": at}
            recs += [
                mbo(10 * i, "A", i * 2, "B", 10 + i, 1, **where),
                mbo(10 * i + 1, "A", i * 2 + 1, "A", 20, 1, **where),
            ]
        rows = self.rows(tmp_path, recs)
        assert [r.split(",")[1] for r in rows] == [
            "OLDSYM", "OLDSYM@2", "ESH4", "NEWSYM", "NEWSYM", "NEWSYM@2", "NEWSYM@2"
        ]  # fmt: skip

    def test_bad_records_are_rejected_with_their_index(self, tmp_path: Path) -> None:
        """An unknown action, side N on an add, an add without a price: rejected, numbered by
        their record index; the records around them are applied."""
        recs = [
            mbo(1, "A", 1, "B", 10, 1), mbo(2, "X", 1, "B", 10, 1), mbo(3, "A", 2, "N", 11, 1),
            mbo(4, "A", 3, "A", UNDEF_PRICE, 1), mbo(5, "A", 4, "A", 11, 1),
        ]  # fmt: skip
        text, rejects = convert(tmp_path, write_dbn(tmp_path / "bad.dbn", recs))
        assert [(r["line"], r["reason"]) for r in rejects] == [
            (2, "bad action"), (3, "bad side"), (4, "bad price")
        ]  # fmt: skip
        assert "action=X" in rejects[0]["raw"]
        assert text.splitlines()[1:] == [
            "2023-12-25 22:00:00.001000000 UTC,ESH4,10,11,1,1,5"
        ]  # fmt: skip


class TestAgainstTheModel:
    @settings(max_examples=40, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
    @given(streams())
    def test_dbn_plain_and_zstd_and_csv_exports(self, tmp_path: Path, recs: list[Mbo]) -> None:
        """DBN plain and zstd, and Databento's CSV export (fixed-point and pretty, with a symbol
        column): each equals the naive MBO model byte for byte."""
        expected = mbo_model_csv(recs, SYMBOLS, RENAMED)
        plain = write_dbn(tmp_path / "r.dbn", recs)
        assert convert(tmp_path, plain)[0] == expected
        assert convert(tmp_path, write_dbn(tmp_path / "r.dbn.zst", recs, zstd=True))[0] == expected
        for pretty in (False, True):
            export = write_csv_export(tmp_path / "r.csv", plain, pretty=pretty, symbols=True)
            assert convert(tmp_path, export)[0] == expected, f"pretty={pretty}"

    def test_a_generated_feed(self, tmp_path: Path) -> None:
        """20,000 generated records of eight books and bad ones among them: the model's bytes."""
        recs = list(records(20_000, seed=3, publishers=(1, 2), bad_every=300))
        text, rejects = convert(tmp_path, write_dbn(tmp_path / "g.dbn.zst", recs, zstd=True))
        assert text == mbo_model_csv(recs, SYMBOLS, RENAMED)
        assert text.count("\n") > 500 and len(rejects) > 10

    def test_csv_export_without_symbols_names_by_id(self, tmp_path: Path) -> None:
        """Without a symbol column, rows are named by instrument_id."""
        recs = [mbo(1, "A", 1, "B", 10, 1), mbo(2, "A", 2, "A", 11, 1)]
        export = write_csv_export(
            tmp_path / "e.csv", write_dbn(tmp_path / "e.dbn", recs), pretty=False, symbols=False
        )
        assert convert(tmp_path, export)[0].splitlines()[1].split(",")[1] == "1001"


class TestOfficialSamples:
    @pytest.mark.parametrize(
        "name",
        ["test_data.mbo.dbn", "test_data.mbo.v3.dbn.zst", "glbx_mdp3.test_data.mbo.dbn.zst",
         "xnas_itch.test_data.mbo.dbn.zst"],
    )  # fmt: skip
    def test_decode_and_convert(self, tmp_path: Path, name: str) -> None:
        """Databento's own sample files (real CME and Nasdaq records) convert without error."""
        text, rejects = convert(tmp_path, DBN_SAMPLES / name)
        assert rejects == [] and text.startswith("time,instrument,bid_price")
        if name.startswith("xnas"):
            assert text.splitlines()[1:] == [
                "2020-12-28 09:01:33.580223478 UTC,NVDA,512.01,539,1,17,290662"
            ]

    def test_another_schema_is_refused_naming_it(self, tmp_path: Path) -> None:
        """An MBP-1 file is not L3: exit 2, one line naming its schema."""
        result = cli("-i", DBN_SAMPLES / "test_data.mbp-1.dbn", "-o", tmp_path / "o.csv")
        assert result.returncode == 2
        assert result.stderr.splitlines() == [
            f"l3tol1: error: input {DBN_SAMPLES / 'test_data.mbp-1.dbn'} holds Databento mbp-1"
            " records, not MBO: only MBO (market by order) is a Level 3 feed"
        ]


class TestWithTheRest:
    def test_follow_is_refused(self, tmp_path: Path) -> None:
        """A DBN file is read to its end: --follow is a configuration error."""
        src = write_dbn(tmp_path / "f.dbn", [mbo(1, "A", 1, "B", 10, 1)])
        result = cli("-i", src, "-o", tmp_path / "o.csv", "--follow")
        assert result.returncode == 2 and "a compressed or DBN file" in result.stderr

    def test_parquet_in_nanoseconds_and_instruments(self, tmp_path: Path) -> None:
        """Parquet from DBN keeps nanoseconds; --instruments keeps a book by its name."""
        import pyarrow.parquet as pq

        recs = list(records(5_000, seed=5))
        src = write_dbn(tmp_path / "p.dbn", recs)
        out = tmp_path / "l1.parquet"
        assert cli("-i", src, "-o", out, "--instruments", "NQH4").returncode == 0
        table = pq.read_table(out)
        assert str(table.schema.field("time").type) == "timestamp[ns, tz=UTC]"
        assert set(table.column("instrument").to_pylist()) == {"NQH4"}
        expected = [
            line for line in mbo_model_csv(recs, SYMBOLS, RENAMED).splitlines()[1:]
            if line.split(",")[1] == "NQH4"
        ]  # fmt: skip
        assert table.num_rows == len(expected)
        assert table.column("seq_num").to_pylist() == [int(x.rsplit(",", 1)[1]) for x in expected]

    def test_kill_9_loop_with_a_checkpoint(
        self, survived: Callable[[str, int], None], tmp_path: Path
    ) -> None:
        """300,000 records (zstd), >= 10 kill -9 mid-stream, then a clean finish: exactly the
        rows and rejects of one uninterrupted run."""
        recs = list(records(300_000, seed=8, publishers=(1, 2), bad_every=5_000))
        src = write_dbn(tmp_path / "k.dbn.zst", recs, zstd=True)
        whole, whole_rejects = convert(tmp_path, src)
        assert whole.count("\n") > 10_000 and len(whole_rejects) > 20
        out, ckpt = tmp_path / "l1.csv", tmp_path / "state.ckpt"
        args = ("-i", src, "-o", out, "--checkpoint", ckpt, "--checkpoint-interval", "0.05")
        rng = random.Random(12)
        kills = 0
        while kills < 10:
            for leftover in (out, Path(f"{out}.rejects.jsonl"), ckpt):
                leftover.unlink(missing_ok=True)
            while kill_after_progress(args, ckpt, rng):
                kills += 1
            result = cli(*args, timeout=300)
            assert result.returncode == 0, result.stderr
            text = out.read_text()
            assert text == whole, f"rows lost or doubled: {first_difference(text, whole)}"
            rejects = [json.loads(x) for x in Path(f"{out}.rejects.jsonl").read_text().splitlines()]
            assert rejects == whole_rejects
        survived("dbn input, checkpoint, CSV output", kills)


# -- recordings of the live API: records of every type (issue 17) ---------------------------------


@dataclass(frozen=True)
class Mapping:
    """A symbol-mapping record: ``instrument_id`` is ``symbol`` (its stype_out_symbol)."""

    instrument_id: int
    symbol: str
    stype_in_symbol: str = "ES.FUT"


@dataclass(frozen=True)
class Gateway:
    """A ``system`` record (subscription acks, heartbeats) or an ``error`` one."""

    kind: str
    text: str


LIBS = {1: v1, 2: v2, 3: v3}  # each DBN version's record layouts


def encode_live(items: list, *, version: int = 3, ts_out: bool = False) -> bytes:
    """Records as Databento's own encoder makes them in DBN ``version`` (``bytes`` items are
    taken as they are: records no encoder would make)."""
    lib = LIBS[version]
    extra = {"ts_out": T0} if ts_out else {}
    out = []
    for item in items:
        if isinstance(item, bytes):
            out.append(item)
            continue
        if isinstance(item, Mbo):
            record = dbn.MBOMsg(
                item.publisher_id, item.instrument_id, item.ts_recv - 1000, item.order_id,
                item.price, item.size, dbn.Action(item.action), dbn.Side(item.side),
                item.ts_recv, flags=item.flags, channel_id=0, ts_in_delta=1000,
                sequence=item.sequence, **extra,
            )  # fmt: skip
        elif isinstance(item, Mapping) and version == 1:
            record = lib.SymbolMappingMsg(
                1, item.instrument_id, T0, item.stype_in_symbol, item.symbol, T0, T0 + 2 * DAY,
                **extra,
            )  # fmt: skip
        elif isinstance(item, Mapping):
            record = lib.SymbolMappingMsg(
                1, item.instrument_id, T0, dbn.SType.PARENT, item.stype_in_symbol,
                dbn.SType.RAW_SYMBOL, item.symbol, T0, T0 + 2 * DAY, **extra,
            )  # fmt: skip
        else:
            kind = lib.SystemMsg if item.kind == "system" else lib.ErrorMsg
            if version == 1 and ts_out:  # v1's encoder takes no ts_out for these: append it
                plain = bytes(kind(T0, item.text))
                out.append(bytes((plain[0] + 2,)) + plain[1:] + T0.to_bytes(8, "little"))
                continue
            record = kind(T0, item.text, **extra)
        out.append(bytes(record))
    return b"".join(out)


def write_live(
    path: Path,
    items: list,
    *,
    version: int = 3,
    ts_out: bool = False,
    symbols: dict[int, str] | None = None,
    zstd: bool = False,
) -> Path:
    """A DBN file as a live session records it: metadata without symbology (unless
    ``symbols``), then the records."""
    data = metadata(symbols={} if symbols is None else symbols, version=version, ts_out=ts_out)
    data += encode_live(items, version=version, ts_out=ts_out)
    path.write_bytes(zstandard.ZstdCompressor().compress(data) if zstd else data)
    return path


def decoded_types(path: Path) -> list[str]:
    """The records of a DBN file as Databento's own decoder reads them (as they are)."""
    decoder = dbn.DBNDecoder(upgrade_policy=dbn.VersionUpgradePolicy.AS_IS)
    decoder.write(path.read_bytes())
    return [type(record).__name__ for record in decoder.decode()]


def run(tmp_path: Path, src: Path, core: str, *args: str) -> tuple[str, list[dict], list[dict]]:
    """Convert with ``core``: the rows, the rejects and the JSON log events."""
    out = tmp_path / f"{src.name}.{core}.l1.csv"
    result = cli("-i", src, "-o", out, "--no-follow", "--core", core, "--log-format", "json", *args)
    assert result.returncode == 0, result.stderr
    rejects = [json.loads(line) for line in Path(f"{out}.rejects.jsonl").read_text().splitlines()]
    return out.read_text(), rejects, log_events(result.stderr)


def live_session(
    count: int, seed: int, *, days: int = 2, publishers: tuple[int, ...] = (1,)
) -> list:
    """What a live session records: a subscription ack and symbol mappings first, then MBO
    records (``count``, over ``days``) with heartbeats among them, an error now and then, and
    mappings that arrive late (1004's after its first records) or change (1003's)."""
    rng = random.Random(seed)
    mbos = list(records(count, seed=seed, publishers=publishers))
    spread = days / 2  # `records` spans two days
    items: list = [
        Gateway("system", "Subscription request 0 for mbo data succeeded"),
        Mapping(1001, "ESH4"),
        Mapping(1002, "NQH4"),
        Mapping(1003, "OLDSYM"),
    ]
    renames = 0
    for i, r in enumerate(mbos):
        items.append(r._replace(ts_recv=T0 + int((r.ts_recv - T0) * spread)))
        if rng.random() < 0.002:
            items.append(Gateway("system", "Heartbeat"))
        if i == count // 7:
            items.append(Mapping(1004, "CLG4"))
        if rng.random() < 0.0005:
            renames += 1
            items.append(Mapping(1003, f"NEWSYM{renames}"))
        if rng.random() < 0.0002:
            items.append(Gateway("error", f"Gateway error {i}: subscription limit reached"))
    return items


class TestLiveRecordings:
    @pytest.mark.parametrize("core", CORES)
    @pytest.mark.parametrize(
        ("version", "ts_out"), [(1, False), (2, False), (3, False), (3, True), (1, True)]
    )
    def test_mapping_system_and_error_records_among_mbo_records(
        self, tmp_path: Path, core: str, version: int, ts_out: bool
    ) -> None:
        """A live recording (Databento's encoder, DBN v1 to v3, with and without ts_out): the
        records are walked by their own length; rows are named by the in-band mappings; the
        other records are passed over, counted by type; the error's text is logged. Databento's
        own decoder reads the same file."""
        items = live_session(3_000, seed=4, days=4)
        items.insert(500, Gateway("error", "Subscription to mbo for ES.FUT is lagging"))
        src = write_live(tmp_path / "live.dbn", items, version=version, ts_out=ts_out)
        types = decoded_types(src)
        assert types.count("MBOMsg") == 3_000 and len(types) == len(items) + 1
        assert {"SymbolMappingMsg", "SystemMsg", "ErrorMsg"} <= {
            t.removesuffix("V1") for t in types
        }
        text, rejects, events = run(tmp_path, src, core)
        assert rejects == []
        assert text == mbo_model_csv(items, {}, {})
        assert {"ESH4", "NQH4", "OLDSYM", "1004", "CLG4"} <= {
            r.split(",")[1] for r in text.splitlines()[1:]
        }
        summary = events[-1]
        assert summary["records_by_type"] == {
            "error": sum(isinstance(i, Gateway) and i.kind == "error" for i in items),
            "mbo": 3_000,
            "symbol_mapping": sum(isinstance(i, Mapping) for i in items),
            "system": sum(isinstance(i, Gateway) and i.kind == "system" for i in items),
        }
        errors = [e for e in events if e["event"] == "dbn_error_record"]
        assert errors[0]["text"] == "Subscription to mbo for ES.FUT is lagging"
        assert errors[0]["line"] == 501  # its record index: every record counts

    @pytest.mark.parametrize("core", CORES)
    def test_the_metadata_names_first_then_the_mappings(self, tmp_path: Path, core: str) -> None:
        """An instrument the metadata maps keeps the metadata's symbol whatever the in-band
        mappings say; one it does not map takes the in-band one."""
        recs = [mbo(1, "A", 1, "B", 10, 1), mbo(2, "A", 2, "A", 11, 1),
                mbo(3, "A", 3, "B", 10, 1, instrument=1002),
                mbo(4, "A", 4, "A", 11, 1, instrument=1002)]  # fmt: skip
        items = [Mapping(1001, "LIVE-ES"), Mapping(1002, "LIVE-NQ"), *recs]
        src = write_live(tmp_path / "m.dbn", items, symbols={1001: "ESH4"})
        text, _, _ = run(tmp_path, src, core)
        assert [r.split(",")[1] for r in text.splitlines()[1:]] == ["ESH4", "LIVE-NQ"]

    @pytest.mark.parametrize("core", CORES)
    def test_a_mapping_names_only_the_days_it_precedes(self, tmp_path: Path, core: str) -> None:
        """A book's first record of a day fixes its rows' name for that day: a mapping met later
        names the next days, never rows before it, however the stages' batches fall."""
        day1 = [mbo(1, "A", 1, "B", 10, 1), mbo(2, "A", 2, "A", 11, 1)]
        later = [mbo(3, "A", 3, "B", 10.5, 1), mbo(4, "A", 4, "B", 10.75, 1, at=DAY // 1000)]
        items = [*day1, Mapping(1001, "ESH4"), *later, Mapping(1001, "ESM4")]
        src = write_live(tmp_path / "late.dbn", items)
        text, _, _ = run(tmp_path, src, core)
        assert text == mbo_model_csv(items, {}, {})
        assert [r.split(",")[1] for r in text.splitlines()[1:]] == ["1001", "1001", "ESH4"]

    @pytest.mark.parametrize("core", CORES)
    def test_other_record_types_are_passed_over(self, tmp_path: Path, core: str) -> None:
        """Status and statistics records (any rtype but MBO and symbol mapping) change nothing
        and are counted by their rtype; an MBO record of another length than the metadata's is a
        bad record; the records after it are read."""
        recs = [
            mbo(1, "A", 1, "B", 10, 1),
            mbo(2, "A", 2, "A", 11, 1),
            mbo(3, "A", 3, "A", 10.5, 1),
        ]
        status = bytes(dbn.StatusMsg(1, 1001, T0, T0))
        stat = bytes(dbn.StatMsg(1, 1001, T0, T0, T0, 10**9, 5, dbn.StatType.OPENING_PRICE))
        longer = bytes((16,)) + pack(recs[0])[1:] + bytes(8)  # 64 bytes where MBO is 56
        items = [status, recs[0], stat, longer, recs[1], status, recs[2]]
        src = write_live(tmp_path / "o.dbn", items)
        text, rejects, events = run(tmp_path, src, core)
        assert text == mbo_model_csv(recs, {}, {})
        assert [(r["line"], r["reason"]) for r in rejects] == [(4, "bad record")]
        assert events[-1]["records_by_type"] == {"mbo": 4, "rtype_0x12": 2, "rtype_0x18": 1}

    @pytest.mark.parametrize("core", CORES)
    def test_a_record_shorter_than_its_header_is_damage(self, tmp_path: Path, core: str) -> None:
        """A length below the 16-byte record header cannot be walked past: the input is damaged
        at that record, said in one line naming it (exit 2)."""
        recs = [
            mbo(1, "A", 1, "B", 10, 1),
            mbo(2, "A", 2, "A", 11, 1),
            mbo(3, "A", 3, "A", 10.5, 1),
        ]
        head = metadata(symbols={})
        src = write_live(
            tmp_path / "d.dbn",
            [Mapping(1001, "ESH4"), recs[0], bytes((2, 0xA0)) + bytes(6), *recs[1:]],
        )
        result = cli("-i", src, "-o", tmp_path / "o.csv", "--core", core)
        assert result.returncode == 2
        at = len(head) + 176 + 56
        assert result.stderr.splitlines()[-1] == (
            f"l3tol1: error: input {src} is damaged at record 3 (byte {at}): its length, 8 bytes,"
            " is shorter than a record header"
        )


# -- fields at their extremes (issue 17) -----------------------------------------------------------


class TestExtremes:
    @pytest.mark.parametrize("core", CORES)
    @pytest.mark.parametrize("output", ["csv", "parquet"])
    def test_receive_times_beyond_2_63_are_bad_times(
        self, tmp_path: Path, core: str, output: str
    ) -> None:
        """ts_recv 2^64 - 1 (Databento's undefined time) and 2^63 are rejected as `bad time`,
        never a crash, with either core and output, and with a checkpoint a restart finds
        nothing left to do; 2^63 - 1 (2262-04-11) is still a time."""
        recs = [mbo(1, "A", 1, "B", 10, 1), mbo(2, "A", 2, "A", 11, 1),
                mbo(3, "A", 3, "B", 10.5, 1)._replace(ts_recv=2**64 - 1),
                mbo(4, "C", 1, "B", 10, 1)._replace(ts_recv=2**63),
                mbo(5, "A", 4, "B", 10.25, 1),
                mbo(6, "A", 5, "B", 10.75, 1)._replace(ts_recv=2**63 - 1)]  # fmt: skip
        src = write_dbn(tmp_path / "t.dbn", recs)
        out, ckpt = tmp_path / f"l1.{output}", tmp_path / "state.ckpt"
        args = ("-i", src, "-o", out, "--core", core, "--checkpoint", ckpt)
        for _ in range(2):  # the second run resumes from the end
            result = cli(*args)
            assert result.returncode == 0, result.stderr
        rejects = [json.loads(x) for x in Path(f"{out}.rejects.jsonl").read_text().splitlines()]
        assert [(r["line"], r["reason"]) for r in rejects] == [(3, "bad time"), (4, "bad time")]
        expected = mbo_model_csv(recs, SYMBOLS, RENAMED).splitlines()[1:]
        assert expected[-1].startswith("2262-04-11 23:47:16.854775807 UTC,1001,10.75,")
        if output == "csv":
            assert out.read_text().splitlines()[1:] == expected
        else:
            import pyarrow.parquet as pq

            table = pq.read_table(out)
            assert table.column("seq_num").to_pylist() == [
                int(x.rsplit(",", 1)[1]) for x in expected
            ]
            assert table.column("time").cast("int64").to_pylist()[-1] == 2**63 - 1

    @pytest.mark.parametrize("pretty", [False, True])
    def test_the_csv_export_alike(self, tmp_path: Path, pretty: bool) -> None:
        """Databento's CSV export of the same records (its undefined time is an empty field,
        or a number; 2^63 a date in 2262): the same rejects, the same rows."""
        recs = [mbo(1, "A", 1, "B", 10, 1), mbo(2, "A", 2, "A", 11, 1),
                mbo(3, "A", 3, "B", 10.5, 1)._replace(ts_recv=2**64 - 1),
                mbo(4, "A", 4, "B", 10.25, 1)._replace(ts_recv=2**63)]  # fmt: skip
        export = write_csv_export(
            tmp_path / "e.csv", write_dbn(tmp_path / "e.dbn", recs), pretty=pretty, symbols=True
        )
        for core in CORES:
            text, rejects, _ = run(tmp_path, export, core)
            assert [(r["line"], r["reason"]) for r in rejects] == [(4, "bad time"), (5, "bad time")]
            assert text == mbo_model_csv(recs, SYMBOLS, RENAMED)

    @pytest.mark.parametrize("core", CORES)
    def test_bids_and_asks_at_the_ends_of_int64(self, tmp_path: Path, core: str) -> None:
        """A bid at -2^63 is the worst bid, not the best one forever; prices at both ends of
        int64 (2^63 - 1 is the undefined price, so 2^63 - 2 is the highest) on both sides."""
        low, high = -(2**63), 2**63 - 2

        def at(r: Mbo, price: int) -> Mbo:
            return r._replace(price=price)

        recs = [
            at(mbo(1, "A", 1, "B", 0, 1), low), mbo(2, "A", 2, "A", 10, 1),
            mbo(3, "A", 3, "B", 5, 1), mbo(4, "C", 3, "B", 5, 1),
            at(mbo(5, "A", 4, "B", 0, 2), low + 1), mbo(6, "C", 4, "B", 0, 2),
            at(mbo(7, "A", 5, "B", 0, 1), high), at(mbo(8, "C", 5, "B", 0, 1), high),
            at(mbo(9, "A", 6, "A", 0, 3), low), at(mbo(10, "A", 7, "B", 0, 1), low),
            at(mbo(11, "M", 6, "A", 0, 3), high), mbo(12, "C", 2, "A", 10, 1),
            at(mbo(13, "A", 8, "A", 0, 1), high - 1), mbo(14, "C", 1, "B", 0, 1),
            at(mbo(15, "C", 7, "B", 0, 1), low), mbo(16, "A", 9, "B", 0, 1),
        ]  # fmt: skip
        src = write_dbn(tmp_path / "x.dbn", recs)
        text, rejects, _ = run(tmp_path, src, core)
        assert rejects == []
        assert text == mbo_model_csv(recs, SYMBOLS, RENAMED)
        assert "-9223372036.854775808,10," in text and ",9223372036.854775806," in text

    def test_negative_and_zero_prices_survive_a_checkpoint(self, tmp_path: Path) -> None:
        """Books holding negative and zero prices (spreads) are saved in the checkpoint and read
        back: a restart continues, it does not call the checkpoint damaged."""
        recs = [at for i in range(40) for at in (
            mbo(2 * i + 1, "A", 2 * i + 1, "B", -1.5 - i % 3, 1),
            mbo(2 * i + 2, "A", 2 * i + 2, "A", 0 if i % 2 else -0.5, 1),
        )]  # fmt: skip
        src = write_dbn(tmp_path / "n.dbn", recs)
        out, ckpt = tmp_path / "l1.csv", tmp_path / "state.ckpt"
        for _ in range(2):
            result = cli("-i", src, "-o", out, "--checkpoint", ckpt)
            assert result.returncode == 0, result.stderr
        books = read_checkpoint(ckpt).instruments.instruments
        assert min(price for book in books for _, _, price, _ in book.orders) == -3_500_000_000
        assert out.read_text() == mbo_model_csv(recs, SYMBOLS, RENAMED)


# -- names and restarts (issue 17) -----------------------------------------------------------------


class TestCheckpointedNames:
    def test_kill_9_loop_with_symbol_mappings_between_records(
        self, survived: Callable[[str, int], None], tmp_path: Path
    ) -> None:
        """A live recording over ten days (zstd), its names learnt from mapping records among
        the MBO ones, some of which change a symbol: >= 10 kill -9 mid-stream, then a clean
        finish, give exactly the rows and rejects of one uninterrupted run, which are the
        model's."""
        items = live_session(150_000, seed=21, days=10, publishers=(1, 2))
        src = write_live(tmp_path / "k.dbn.zst", items, zstd=True)
        whole, whole_rejects = convert(tmp_path, src)
        assert whole == mbo_model_csv(items, {}, {})
        names = {row.split(",")[1] for row in whole.splitlines()[1:]}
        assert {"ESH4", "NQH4@2", "1004", "CLG4"} <= names, names
        assert len({name for name in names if name.startswith("NEWSYM")}) > 8  # day by day
        out, ckpt = tmp_path / "l1.csv", tmp_path / "state.ckpt"
        args = ("-i", src, "-o", out, "--checkpoint", ckpt, "--checkpoint-interval", "0.05")
        rng = random.Random(13)
        kills = 0
        while kills < 10:
            for leftover in (out, Path(f"{out}.rejects.jsonl"), ckpt):
                leftover.unlink(missing_ok=True)
            while kill_after_progress(args, ckpt, rng):
                kills += 1
            result = cli(*args, timeout=300)
            assert result.returncode == 0, result.stderr
            assert out.read_text() == whole, "rows lost, duplicated or named otherwise"
            rejects = [json.loads(x) for x in Path(f"{out}.rejects.jsonl").read_text().splitlines()]
            assert rejects == whole_rejects
        survived("dbn input with in-band symbol mappings", kills)

    def test_a_format_2_checkpoint_is_refused_in_one_line(self, tmp_path: Path) -> None:
        """A checkpoint of the format before in-band names (2) is refused in one line that says
        what to do, never read as if it had none."""
        src = write_dbn(tmp_path / "f.dbn", [mbo(1, "A", 1, "B", 10, 1)])
        out, ckpt = tmp_path / "l1.csv", tmp_path / "state.ckpt"
        assert cli("-i", src, "-o", out, "--checkpoint", ckpt).returncode == 0
        state = json.loads(zstandard.ZstdDecompressor().stream_reader(ckpt.read_bytes()).read())
        assert state["version"] == 3 and state["names"]["names"] == [["1:1001", 19716, "ESH4"]]
        state["version"] = 2
        del state["names"]["names"], state["names"]["mappings"]
        ckpt.write_bytes(zstandard.ZstdCompressor().compress(json.dumps(state).encode()))
        result = cli("-i", src, "-o", out, "--checkpoint", ckpt)
        assert result.returncode == 2
        assert result.stderr.splitlines() == [
            f"l3tol1: error: checkpoint {ckpt} was written by an earlier l3tol1 (format 2), which"
            " this version does not read: finish that run with the version that started it, or"
            " remove the checkpoint to start over"
        ]
