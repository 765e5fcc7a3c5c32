"""The checkpoint (checkpoint/, core/plain.py): each piece written and read back by its own class,
the whole on disk, and every kind of damage refused with where it is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from l3tol1.checkpoint import Checkpoint, CheckpointStore, InputRecord, RunOptions, decode, encode
from l3tol1.core.feed import FeedState
from l3tol1.core.instruments import InstrumentsState, InstrumentState
from l3tol1.core.naming import NamerState
from l3tol1.core.plain import PlainDataError, PlainReader
from l3tol1.errors import CheckpointError, ConfigError
from l3tol1.sinks.base import output_state_from_plain
from l3tol1.sinks.csv import CsvState
from l3tol1.sinks.files import FileRecord, replace_file
from l3tol1.sinks.parquet import ParquetState
from l3tol1.sinks.rejects import RejectsState
from tests.model import ev

FILE = FileRecord("/out/l1.csv", 1, 2, 300)
PIECES: list[Any] = [
    RunOptions(5, 1000, 2.5, "symbol", ("ES", "a,b"), "parquet"),
    RunOptions(None, 1, None, None, None, None),
    InputRecord("/in/l3.csv", 1, 2, 4096, "ab" * 32, 123_456, 789),
    FeedState(10, 1, [(3, 4), (7, 7)], [ev(12, line=20), ev(2**64 - 1, line=21)], 5, 1, 2, 2, 3),
    FeedState(None, None),
    InstrumentsState(
        [
            InstrumentState("ES", [(0, "a", -(2**63), 5), (1, "b", 2**63 - 1, 2**32 - 1)], None),
            InstrumentState("", [], (10, 11, 1, 2)),
        ],
        {"add_of_live_order": 2},
        7,
        1,
        2,
        3,
        99,
    ),
    NamerState(
        1, ["1:5482", "2:5482"], ["1:5482"], [(5482, "ESH4")], [("1:5482", 19717, "ESH4")], ["ESH4"]
    ),
    CsvState(FILE, 12, True),
    CsvState(FILE, 0, None),
    ParquetState("/out/l1.parquet", 1, 3, (("part-000000.parquet", 10),), True, False),
    RejectsState(FILE, {"bad price": 2}),
]


def through_json(piece: Any) -> Any:
    return json.loads(json.dumps(piece.to_plain()))


def read_back(piece: Any, plain: Any) -> Any:
    if isinstance(piece, CsvState | ParquetState):
        return output_state_from_plain(plain, "output", PlainReader())
    return type(piece).from_plain(plain, "piece", PlainReader())


class TestPieces:
    @pytest.mark.parametrize("piece", PIECES, ids=lambda p: type(p).__name__)
    def test_each_piece_reads_back_as_it_was(self, piece: Any) -> None:
        """Through JSON and back: the same value (each class owns both directions)."""
        assert read_back(piece, through_json(piece)) == piece

    @pytest.mark.parametrize("piece", PIECES, ids=lambda p: type(p).__name__)
    def test_a_missing_key_is_named(self, piece: Any) -> None:
        plain = through_json(piece)
        key = sorted(k for k in plain if k != "kind")[0]
        del plain[key]
        with pytest.raises(PlainDataError, match=rf"\.{key}: missing"):
            read_back(piece, plain)

    @pytest.mark.parametrize(
        ("change", "where"),
        [
            (lambda p: p["pending"]["seq"].append(3), "columns of different lengths"),
            (lambda p: p["pending"]["seq"].__setitem__(0, -1), "pending.seq"),
            (lambda p: p.__setitem__("next_seq", 12), "waiting seq 12 is not after"),
            (lambda p: p["counters"].__setitem__("late", "1"), "counters.late"),
        ],
        ids=["short column", "negative seq", "inconsistent", "counter as text"],
    )
    def test_damaged_feed(self, change: Any, where: str) -> None:
        plain = through_json(PIECES[3])
        change(plain)
        with pytest.raises(PlainDataError, match=where):
            FeedState.from_plain(plain, "feed", PlainReader())

    def test_an_order_twice_in_a_book_is_damage(self) -> None:
        plain = through_json(PIECES[5])
        plain["books"][0]["orders"]["order_id"][1] = "a"
        plain["books"][0]["orders"]["side"][1] = 0
        with pytest.raises(PlainDataError, match=r"books\[0\]\.orders: an order appears twice"):
            InstrumentsState.from_plain(plain, "instruments", PlainReader())

    def test_parts_out_of_order_are_damage(self) -> None:
        plain = through_json(PIECES[9])
        plain["parts"][0][0] = "part-000001.parquet"
        with pytest.raises(PlainDataError, match=r"output\.parts"):
            output_state_from_plain(plain, "output", PlainReader())

    def test_an_unknown_output_kind_is_damage(self) -> None:
        with pytest.raises(PlainDataError, match=r"output\.kind: not one of csv, parquet"):
            output_state_from_plain({"kind": "xlsx"}, "output", PlainReader())


def checkpoint(**changes: Any) -> Checkpoint:
    pieces = {
        "options": PIECES[0],
        "input": PIECES[2],
        "feed": PIECES[3],
        "instruments": PIECES[5],
        "output": PIECES[9],
        "rejects": PIECES[10],
        "names": PIECES[6],
        **changes,
    }
    return Checkpoint(**pieces)


class TestOnDisk:
    @pytest.mark.parametrize(
        "whole",
        [checkpoint(), checkpoint(instruments=None, output=None)],
        ids=["file job", "publisher (no books, no output)"],
    )
    def test_encode_then_decode(self, whole: Checkpoint) -> None:
        assert decode(encode(whole), Path("c.ckpt")) == whole

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            (b"garbage", "is not an l3tol1 checkpoint"),
            (b'{"version": 1}', "format 1"),
            (b"\x28\xb5\x2f\xfdnot zstd", "is damaged"),
        ],
    )
    def test_what_is_not_a_checkpoint(self, data: bytes, message: str) -> None:
        with pytest.raises(CheckpointError, match=message):
            decode(data, Path("c.ckpt"))

    def test_damage_inside_names_the_file_and_where(self) -> None:
        import zstandard

        plain = json.loads(zstandard.ZstdDecompressor().decompress(encode(checkpoint())))
        del plain["rejects"]["by_reason"]
        data = zstandard.ZstdCompressor().compress(json.dumps(plain).encode())
        with pytest.raises(CheckpointError) as caught:
            decode(data, Path("c.ckpt"))
        assert str(caught.value) == (
            "checkpoint c.ckpt is damaged (rejects.by_reason: missing); remove it to start over"
        )

    def test_the_store_replaces_atomically_and_removes_a_crashed_temp(self, tmp_path: Path) -> None:
        path = tmp_path / "state.ckpt"
        store = CheckpointStore(path)
        store.lock()
        try:
            assert store.load() == (None, False)
            store.save(checkpoint())
            (tmp_path / "state.ckpt.tmp").write_bytes(b"half written")  # a crash mid-save
            assert store.load() == (checkpoint(), True)
            assert sorted(p.name for p in tmp_path.iterdir()) == ["state.ckpt", "state.ckpt.lock"]
        finally:
            store.unlock()

    def test_a_second_run_is_locked_out(self, tmp_path: Path) -> None:
        first, second = CheckpointStore(tmp_path / "c"), CheckpointStore(tmp_path / "c")
        first.lock()
        try:
            with pytest.raises(ConfigError, match="in use by another process"):
                second.lock()
        finally:
            first.unlock()

    def test_replace_file(self, tmp_path: Path) -> None:
        path = tmp_path / "f"
        replace_file(path, b"one")
        replace_file(path, b"two")
        assert path.read_bytes() == b"two" and [p.name for p in tmp_path.iterdir()] == ["f"]
