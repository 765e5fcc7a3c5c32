"""Bad rows (SPEC §4), through the real CLI: each reason, with its physical line number, while the
run goes on; numbers past every bound rejected (and read again by a restart without a crash
loop), the largest valid ones written exactly. The parser's rules in process are
unit/test_core_parser.py's; hostile input, the fuzz tests'."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

from l3tol1.core.records import Reason
from tests.conftest import (
    HEADER,
    T,
    add,
    book_rows,
    cli,
    delete,
    finish,
    rows_of,
    start_cli,
    trade,
    update,
    wait_for,
    wait_listening,
    write_l3,
)

GOOD_TIME = "2021-08-03 01:00:03.22333 UTC"


def read_rejects(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def rejects_of(out: Path) -> list[dict]:
    """The records of the reject file beside ``out``."""
    return read_rejects(Path(f"{out}.rejects.jsonl"))


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


class TestBadRowsNeverStopTheRun:
    HUGE: ClassVar = [
        (f"{'9' * 5000},a,BUY,10,1,,,,,,,,,,,2021-08-03 01:00:00.1 UTC", "bad seq_num"),
        (add(3, "b", "BUY", "10", "9" * 5000), "bad qty"),
        (add(3, "b", "BUY", "1" + "0" * 400 + ".0", "1"), "bad price"),
        (add(3, "b", "BUY", "1" + "0" * 5000, "1"), "bad price"),
    ]

    def test_huge_numbers_are_rejected_and_a_restart_goes_on(self, tmp_path: Path) -> None:
        """Numbers past every bound, following with a checkpoint: rejected, counted, and runs
        restarted from before them read them again and go on (no crash loop)."""
        src = write_l3(tmp_path / "l3.csv", book_rows(1, 2))
        out, ckpt = tmp_path / "l1.csv", tmp_path / "c.ckpt"
        args = ("-i", src, "-o", out, "--start-seq", "1", "-t", "0.02", "--checkpoint", ckpt)
        proc = start_cli(*args)
        wait_for(lambda: out.exists() and len(rows_of(out)) == 1, 20, "the first row")
        assert finish(proc)[0] == 0
        with src.open("a") as f:
            f.write("".join(text + "\n" for text, _ in self.HUGE) + book_rows(3, 4)[0] + "\n")
        for _ in range(2):  # the second run resumes after the first's stop (or its kill -9)
            proc = start_cli(*args)
            wait_for(lambda: len(rows_of(out)) == 2, 20, "the row after the huge ones")
            proc.kill()
            proc.communicate()
        proc = start_cli(*args)
        wait_listening(proc)
        with src.open("a") as f:
            f.write(book_rows(4, 4)[0] + "\n")
        wait_for(lambda: len(rows_of(out)) == 3, 20, "the last row")
        assert finish(proc)[0] == 0
        assert [r["reason"] for r in rejects_of(out)] == [reason for _, reason in self.HUGE]
        assert [line.split(",")[-1] for line in rows_of(out)] == ["2", "3", "4"]

    def test_a_level_of_the_largest_qtys_is_written_exactly(self, tmp_path: Path) -> None:
        """Two orders of the largest qty at one price: their total is written whole."""
        most = str(2**32 - 1)
        src = write_l3(
            tmp_path / "l3.csv",
            [
                add(1, "a", "BUY", "10", most),
                add(2, "b", "BUY", "10", most),
                add(3, "s", "SELL", "11", "1"),
            ],
        )
        out = tmp_path / "l1.csv"
        assert cli("-i", src, "-o", out, "--no-follow").returncode == 0
        assert rows_of(out) == [f"2021-08-03 01:00:00.100000 UTC,10,11,{2 * (2**32 - 1)},1,3"]

    def test_prices_beyond_a_double_are_rejected(self, tmp_path: Path) -> None:
        """A price a double cannot hold is `bad price`, never inf, never merged with another."""
        big = "1" + "0" * 400 + ".0"
        src = write_l3(
            tmp_path / "l3.csv",
            [
                add(1, "a", "SELL", big, "1"),
                add(2, "b", "SELL", "2" + big[1:], "1"),
                *book_rows(3, 4),
            ],
        )
        out = tmp_path / "l1.csv"
        assert cli("-i", src, "-o", out, "--no-follow", "--start-seq", "1").returncode == 0
        assert [r["reason"] for r in rejects_of(out)] == ["bad price", "bad price"]
        assert "inf" not in out.read_text()
