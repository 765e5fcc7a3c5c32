"""Databento MBO input (SPEC §12): DBN files (plain and zstd) and Databento's CSV export, through
the real CLI, against a naive MBO model; the official sample files; kill -9 with a checkpoint."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import databento_dbn as dbn
import pytest
import zstandard
from bench.generate_mbo import RENAMED, SYMBOLS, UNDEF_PRICE, Mbo, metadata, pack, records
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import cli
from tests.model import mbo_model_csv
from tests.test_reliability import kill_after_progress

DBN_SAMPLES = Path(__file__).resolve().parents[1] / "data" / "dbn"  # copies of ../shared/data/dbn
T0 = 1_703_541_600_000_000_000  # 2023-12-25 22:00:00 UTC, the day the metadata starts
LAST = 0x80


def write_dbn(path: Path, recs: list[Mbo], *, zstd: bool = False) -> Path:
    """A DBN file of these records: metadata encoded by databento-dbn, records packed as it
    packs them."""
    data = metadata() + b"".join(pack(r) for r in recs)
    path.write_bytes(zstandard.ZstdCompressor().compress(data) if zstd else data)
    return path


def write_csv_export(path: Path, dbn_file: Path, *, pretty: bool, symbols: bool) -> Path:
    """Databento's own CSV export of a DBN file (the Transcoder the `dbn` CLI is built on)."""
    out = io.BytesIO()
    transcoder = dbn.Transcoder(
        out, dbn.Encoding.CSV, dbn.Compression.NONE,
        pretty_px=pretty, pretty_ts=pretty, map_symbols=symbols,
    )  # fmt: skip
    transcoder.write(dbn_file.read_bytes())
    transcoder.flush()
    path.write_bytes(out.getvalue())
    return path


def convert(tmp_path: Path, src: Path, *args: str) -> tuple[str, list[dict]]:
    out = tmp_path / f"{src.name}.l1.csv"
    result = cli("-i", src, "-o", out, "--no-follow", *args)
    assert result.returncode == 0, result.stderr
    rejects = [json.loads(line) for line in Path(f"{out}.rejects.jsonl").read_text().splitlines()]
    return out.read_text(), rejects


def mbo(
    seq: int, action: str, order: int, side: str, price: float, size: int,
    *, last: bool = True, publisher: int = 1, instrument: int = 1001, at: int = 0,
) -> Mbo:  # fmt: skip
    """One MBO record, for hand-written scenarios (price in whole units, or UNDEF)."""
    nanos = UNDEF_PRICE if price == UNDEF_PRICE else round(price * 10**9)
    return Mbo(publisher, instrument, order, nanos, size, LAST if last else 0, action, side,
               T0 + 1_000_000 + at * 1000, seq)  # fmt: skip


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


@st.composite
def streams(draw: st.DrawFn) -> list[Mbo]:
    """Random MBO records over three books (two publishers), with venue events, clears, unknown
    orders, cancels larger than what rests, and negative prices."""
    books = [(1, 1001), (2, 1001), (1, 1003)]
    out = []
    for i in range(draw(st.integers(0, 120))):
        publisher, instrument = books[draw(st.integers(0, 2))]
        action = draw(st.sampled_from("AAAAMMCCCRTFN"))
        side = draw(st.sampled_from("BA")) if action in "AMC" else draw(st.sampled_from("BAN"))
        price = draw(st.sampled_from([-1.5, 0, 99.5, 100, 100.25, 101])) * 10**9
        out.append(
            Mbo(
                publisher,
                instrument,
                draw(st.integers(1, 6)),
                int(price),
                draw(st.integers(0, 5)),
                LAST if draw(st.integers(0, 3)) else 0,
                action,
                side,
                T0 + 10**6 + i * 4_000_000_000_000,
                i + 1,
            )
        )
    return out


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

    def test_kill_9_loop_with_a_checkpoint(self, tmp_path: Path) -> None:
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
            assert out.read_text() == whole, "rows lost or duplicated"
            rejects = [json.loads(x) for x in Path(f"{out}.rejects.jsonl").read_text().splitlines()]
            assert rejects == whole_rejects
        print(f"dbn: {kills} kill -9 survived")
