"""Bad rows (SPEC §4): each reason, with its physical line number, while the run goes on."""

from __future__ import annotations

import json
from pathlib import Path

from l3tol1.core.records import Reason
from tests.conftest import HEADER, T, add, cli, delete, trade, update, write_l3

GOOD_TIME = "2021-08-03 01:00:03.22333 UTC"


def read_rejects(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


class TestEveryReason:
    def test_each_bad_row_is_rejected_with_line_and_reason(self, tmp_path: Path) -> None:
        """Every SPEC §4 case lands in the reject file with its 1-based line; exit 0."""
        bad = [
            ("1,2,3", Reason.FIELD_COUNT),
            (add(1, "x", "BUY", "10", "1") + ",extra", Reason.FIELD_COUNT),
            ("", Reason.FIELD_COUNT),
            (add(1, "x", "BUY", "10", "1").replace("1,", "1.62794E+18,", 1), Reason.SEQ),
            (add(-1, "x", "BUY", "10", "1"), Reason.SEQ),
            (f"5,,,,,,,,,,,,,,,{T}", Reason.NO_ACTION),
            (f"5,a,BUY,10,1,,,,,b,SELL,,,,,{T}", Reason.MANY_ACTIONS),
            (add(5, "x", "buy", "10", "1"), Reason.SIDE),
            (delete(5, "x", "HOLD"), Reason.SIDE),
            (add(5, "x", "BUY", "7.45797E+18", "1"), Reason.PRICE),
            (add(5, "x", "BUY", "0", "1"), Reason.PRICE),
            (add(5, "x", "BUY", "-3", "1"), Reason.PRICE),
            (add(5, "x", "BUY", "nan", "1"), Reason.PRICE),
            (add(5, "x", "BUY", "inf", "1"), Reason.PRICE),
            (add(5, "x", "BUY", "1.2345678901234567", "1"), Reason.PRICE),
            (update(5, "x", "BUY", "", "1"), Reason.PRICE),
            (trade(5, "x", "BUY", "abc", "1"), Reason.PRICE),
            (add(5, "x", "BUY", "10", "1.5"), Reason.QTY),
            (add(5, "x", "BUY", "10", "-1"), Reason.QTY),
            (add(5, "x", "BUY", "10", "3E+2"), Reason.QTY),
            (update(5, "x", "BUY", "10", ""), Reason.QTY),
            (add(5, "x", "BUY", "10", "0"), Reason.ZERO_QTY_ADD),
            (add(5, "x", "BUY", "10", "0.0"), Reason.ZERO_QTY_ADD),
            (add(5, "x", "BUY", "10", "1", "2021-08-03 01:00:03"), Reason.TIME),
            (add(5, "x", "BUY", "10", "1", "2021-02-30 01:00:03.1 UTC"), Reason.TIME),
            (add(5, "x", "BUY", "10", "1", "2021-08-03 01:00:03.1234567 UTC"), Reason.TIME),
            (add(5, "x", "BUY", "10", "1", "yesterday"), Reason.TIME),
        ]
        good = [
            add(1, "a", "BUY", "10", "300.0"),
            add(2, "b", "SELL", "11", "300"),
            update(3, "a", "BUY", "10.5", "2"),
            trade(4, "b", "SELL", "11", "1", "2021-08-03 01:00:03 UTC"),
        ]
        rows = good[:2] + [text for text, _ in bad] + good[2:]
        src = write_l3(tmp_path / "l3.csv", rows)
        out = tmp_path / "l1.csv"
        result = cli("-i", src, "-o", out, "--no-follow")
        assert result.returncode == 0, result.stderr
        records = read_rejects(tmp_path / "l1.csv.rejects.jsonl")
        expected = [
            {"line": 4 + i, "reason": reason, "raw": text} for i, (text, reason) in enumerate(bad)
        ]
        assert records == expected
        assert out.read_text().splitlines() == [
            "time,bid_price,ask_price,bid_size,ask_size,seq_num",
            "2021-08-03 01:00:00.100000 UTC,10,11,300,300,2",
            "2021-08-03 01:00:00.100000 UTC,10.5,11,2,300,3",
            "2021-08-03 01:00:03.000000 UTC,10.5,11,2,299,4",
        ]

    def test_late_and_duplicate_go_to_the_reject_file(self, tmp_path: Path) -> None:
        """Rows whose seq was passed or already seen are rejected as late / duplicate."""
        rows = [
            add(10, "a", "BUY", "10", "1"),
            add(11, "b", "SELL", "11", "1"),
            add(11, "c", "SELL", "12", "1"),
            add(9, "d", "BUY", "9", "1"),
        ]
        src = write_l3(tmp_path / "l3.csv", rows)
        result = cli("-i", src, "-o", tmp_path / "o.csv", "--no-follow", "--start-seq", "10")
        assert result.returncode == 0, result.stderr
        records = read_rejects(tmp_path / "o.csv.rejects.jsonl")
        assert records == [
            {"line": 4, "reason": "duplicate", "raw": rows[2]},
            {"line": 5, "reason": "late", "raw": rows[3]},
        ]

    def test_undecodable_and_oversized_lines(self, tmp_path: Path) -> None:
        """Invalid UTF-8 and lines over 64 KiB are rejected; the lines after them still count."""
        src = tmp_path / "l3.csv"
        good = [add(1, "a", "BUY", "10", "1"), add(2, "b", "SELL", "11", "1")]
        with src.open("wb") as f:
            f.write(HEADER.encode() + b"\n")
            f.write(good[0].encode() + b"\n")
            f.write(b"1,\xff\xfe,BUY\n")
            f.write(b"x" * 200_000 + b"\n")
            f.write(good[1].encode() + b"\n")
        result = cli("-i", src, "-o", tmp_path / "o.csv", "--no-follow")
        assert result.returncode == 0, result.stderr
        records = read_rejects(tmp_path / "o.csv.rejects.jsonl")
        assert [(r["line"], r["reason"]) for r in records] == [
            (3, Reason.UTF8),
            (4, Reason.TOO_LONG),
        ]
        assert records[0]["raw"] == "1,\\xff\\xfe,BUY"
        assert len(records[1]["raw"]) < 1000
        assert (tmp_path / "o.csv").read_text().count("\n") == 2

    def test_crlf_bom_and_reordered_columns(self, tmp_path: Path) -> None:
        """A BOM, CRLF endings and columns in another order with extras are all accepted."""
        names = HEADER.split(",")
        order = [*reversed(names), "venue"]

        def row(values: str) -> str:
            by_name = dict(zip(names, values.split(","), strict=True))
            return ",".join([by_name[n] for n in reversed(names)] + ["XNAS"])

        text = "\ufeff" + ",".join(order) + "\r\n"
        text += row(add(1, "a", "BUY", "10", "1")) + "\r\n"
        text += row(add(2, "b", "SELL", "11.50", "2")) + "\r\n"
        src = tmp_path / "l3.csv"
        src.write_bytes(text.encode())
        result = cli("-i", src, "-o", tmp_path / "o.csv", "--no-follow")
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "o.csv").read_text().splitlines()[1:] == [
            "2021-08-03 01:00:00.100000 UTC,10,11.5,1,2,2"
        ]
