"""Each core's CsvParser.parse against the Python parse_row, the reference (SPEC §1, §4, §9).

The Python core's fast path in `parse` only takes rows whose values its memo tables already
hold, so each case is parsed twice by the same parser: once with cold memos (every row goes to
parse_row) and once with warm ones (most rows take the fast path). The compiled core parses in
C and hands what it does not take to the reference. Every way must equal, event for event and
reject for reject, what parse_row makes of each line on its own.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l3tol1.core.csv_parser import REQUIRED_COLUMNS, CsvParser, HeaderError
from l3tol1.core.records import Reason, Reject

GOOD = {
    "seq": ["0", "7", "1627942268920653171", "18446744073709551615", "0" * 30 + "7"],
    "time": [
        "2021-08-03 01:00:03.223330 UTC",
        "2021-08-03 01:00:03.22333 UTC",
        "2021-08-03 01:00:03.2 UTC",
        "2021-08-03 01:00:03. UTC",
        "2021-08-03 01:00:03 UTC",
    ],
    "price": ["229", "228.2", "229.13", ".5", "229.130", "0.000000001", "9223372036.854775807"],
    "qty": ["1", "300", "300.0", "4294967295", "0" * 5000 + "7", "7." + "0" * 5000],
    "id": ["1", "2", "7457972527797790256", "é"],
    "side": ["BUY", "SELL"],
}
BAD = {
    "seq": ["-1", "+7", " 7", "1.62794E+18", "٣", "", "18446744073709551616", "9" * 5000],
    "time": [
        "2021-08-03 01:00:03.1234567 UTC",  # seven digits
        "2021-08-03 01:00:03.12a456 UTC",
        "2021-08-03 01:00:03.123456 UTCX",
        "2021-08-03 01:00:03.123456UTC",
        "2021-08-03 01:00:03x123456 UTC",
        "2021-08-03 01:00:03.١٢٣ UTC",  # non-ASCII digits
        "2021-08-03 01:00:03 UTC\r",
        "2021-02-29 01:00:00 UTC",  # no such day
        "2021-02-29 01:00:00.5 UTC",
        "2021-08-03 01:00:0 UTC",
        "2021-08-03 01:00:03",
        "",
    ],
    "price": [
        "0",
        "0.0",
        "-1",
        "nan",
        "1e5",
        "1.62794E+18",
        "1.2345678901234567",
        "",
        ".",
        "+1",
        "1" + "0" * 400 + ".0",
        "0.0000000001",
        "9223372036.854775808",
        "9" * 5000,
    ],
    "qty": ["0.5", "-1", "1_000", "+3", "٣", " 5", "1e2", "", "4294967296", "9" * 5000],
    "side": ["buy", "HOLD", ""],
    "id": ['"q"', '"a,b"', ""],
}
ACTIONS = ["add", "update", "delete", "trade"]


@st.composite
def layouts(draw: st.DrawFn) -> list[str]:
    """The required columns in any order, with extra columns anywhere."""
    columns = draw(st.permutations(REQUIRED_COLUMNS))
    for extra in draw(st.lists(st.sampled_from(["venue", "note"]), max_size=2, unique=True)):
        columns.insert(draw(st.integers(0, len(columns))), extra)
    return columns


@st.composite
def rows(draw: st.DrawFn, columns: list[str]) -> str:
    """A well-formed row (one action, good values), then perhaps one thing made wrong."""
    values = dict.fromkeys(columns, "")
    values["seq_num"] = draw(st.sampled_from(GOOD["seq"]))
    values["time"] = draw(st.sampled_from(GOOD["time"]))
    action = draw(st.sampled_from(ACTIONS))
    values[f"{action}_order_id"] = draw(st.sampled_from(GOOD["id"]))
    values[f"{action}_side"] = draw(st.sampled_from(GOOD["side"]))
    if action != "delete":
        values[f"{action}_price"] = draw(st.sampled_from(GOOD["price"]))
        values[f"{action}_qty"] = draw(st.sampled_from([*GOOD["qty"], "0"]))
    kind = draw(st.sampled_from(["none", "none", *BAD, "second action", "extra"]))
    if kind in ("seq", "time"):
        values["seq_num" if kind == "seq" else "time"] = draw(st.sampled_from(BAD[kind]))
    elif kind == "id":
        values[f"{action}_order_id"] = draw(st.sampled_from(BAD[kind]))
    elif kind in BAD:  # side, price or qty: any action's, the unused ones included
        values[f"{draw(st.sampled_from(ACTIONS))}_{kind}"] = draw(st.sampled_from(BAD[kind]))
    elif kind == "second action":
        values[f"{draw(st.sampled_from(ACTIONS))}_order_id"] = "x"
    elif kind == "extra" and "venue" in values:
        values["venue"] = draw(st.sampled_from(['"q"', "XNAS"]))
    text = ",".join(values[c] for c in columns)
    return text + draw(st.sampled_from(["", "", "", "", "\r", ",extra"]))


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, list[str]]:
    columns = draw(layouts())
    return ",".join(columns), draw(st.lists(rows(columns), max_size=30))


def reference(header: str, lines: list[str], first_line: int) -> tuple[list, list]:
    parser = CsvParser(header)
    events, rejects = [], []
    for i, text in enumerate(lines):
        result = parser.parse_row(text, first_line + i)
        (rejects if isinstance(result, Reject) else events).append(result)
    return events, rejects


def data(lines: list[str]) -> bytes:
    """Lines as the source hands them to the parser: bytes, each line ending in a newline."""
    return "".join(line + "\n" for line in lines).encode()


def parse(parser: Any, lines: list[str], first_line: int) -> tuple[list, list]:
    """A parser's (events, rejects) for these lines, with the events as a list."""
    events, rejects = parser.parse(data(lines), first_line)
    return list(events), rejects


class TestFastPath:
    @settings(
        max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(cases())
    def test_parse_equals_parse_row(self, core: Any, case: tuple[str, list[str]]) -> None:
        """Cold or warm memos, parse gives what parse_row gives, line by line."""
        header, lines = case
        expected = reference(header, lines, 2)
        parser = core.csv_parser(header)
        assert parse(parser, lines, 2) == expected  # cold: memos fill up
        assert parse(parser, lines, 2) == expected  # warm: the fast path

    @pytest.mark.parametrize(
        # The last column is the time, or an extra one that no check reads (a CR there).
        "columns",
        [list(REQUIRED_COLUMNS), [*REQUIRED_COLUMNS[::-1], "venue"]],
    )
    def test_every_single_fault(self, core: Any, columns: list[str]) -> None:
        """Every action with every one bad value in every place: parse equals parse_row."""
        lines = []
        for action in ACTIONS:
            good = dict.fromkeys(columns, "")
            good |= {"seq_num": "7", "time": GOOD["time"][0], "venue": "XNAS"}
            good |= {f"{action}_order_id": "1", f"{action}_side": "BUY"}
            if action != "delete":
                good |= {f"{action}_price": "229.13", f"{action}_qty": "300"}
            faults = [("seq_num", v) for v in BAD["seq"]]
            faults += [("time", v) for v in BAD["time"] + GOOD["time"]]
            faults += [(f"{action}_order_id", v) for v in BAD["id"]]
            faults += [(f"{other}_order_id", "x") for other in ACTIONS if other != action]
            faults += [("venue", '"q"')]
            faults += [(f"{action}_qty", v) for v in ("0", "0.0")]  # zero: bad for ADD only
            for kind in ("side", "price", "qty"):
                faults += [(f"{a}_{kind}", v) for a in ACTIONS for v in BAD[kind]]
            for column, value in [(None, None), *faults]:
                values = good if column is None else {**good, column: value}
                text = ",".join(values[c] for c in columns)
                lines += [text, text + "\r", text + ",extra"]
        header = ",".join(columns)
        expected = reference(header, lines, 2)
        parser = core.csv_parser(header)
        assert parse(parser, lines, 2) == expected
        assert parse(parser, lines, 2) == expected
        assert len(expected[0]) > 4 * 4 and len(expected[1]) > len(lines) // 2

    def test_quote_with_bare_cr_is_rejected_not_raised(self, core: Any) -> None:
        """csv cannot read a quoted row with a CR outside quotes: a reject, never an error."""
        header = ",".join(REQUIRED_COLUMNS)
        text = '1,"a",BUY,1,1,,,,,,,,,,\r,2021-08-03 01:00:03 UTC'
        expected = ([], [(5, Reason.FIELD_COUNT, text)])
        assert parse(core.csv_parser(header), [text], 5) == expected

    def test_fast_path_is_taken(self) -> None:
        """Python core: with warm memos, well-formed rows of every action skip parse_row, CRLF
        or not."""
        header = ",".join(REQUIRED_COLUMNS)
        t = "2021-08-03 01:00:03.22333 UTC"
        lines = [
            f"1,a,BUY,229.13,300,,,,,,,,,,,{t}",
            f"2,,,,,a,BUY,229.1,300.0,,,,,,,{t}",
            f"3,,,,,,,,,a,BUY,,,,,{t}",
            f"4,,,,,,,,,,,a,SELL,229,5,{t}",
        ]
        parser = CsvParser(header)
        expected = parser.parse(data(lines), 2)
        calls = []
        parser.parse_row = lambda text, line: calls.append(line) or (line, "x", text)  # type: ignore[method-assign]
        assert parser.parse(data(lines), 2) == expected
        assert parser.parse(data([line + "\r" for line in lines]), 2) == expected
        assert calls == []

    @pytest.mark.parametrize(
        "endings",
        [["\r"] * 4, ["\r", "\r", "\r\r", "\r"], ["\r", "", "\r", "\r"], ["", "", "", "\r"]],
    )
    def test_crlf_batches(self, core: Any, endings: list[str]) -> None:
        """CRs taken off a whole CRLF batch at once give what parse_row gives line by line."""
        header = ",".join(REQUIRED_COLUMNS)
        t = "2021-08-03 01:00:03 UTC"
        lines = [
            f"1,a,BUY,229.13,300,,,,,,,,,,,{t}",
            f"2,,,,,,,,,a,BUY,,,,,{t}",
            f"3,,,,,,,,,a,BUY,,,,,{t}",
            f"4,,,,,,,,,,,a,SELL,229,5,{t}",
        ]
        lines = [line + end for line, end in zip(lines, endings, strict=True)]
        parser = core.csv_parser(header)
        expected = reference(header, lines, 2)
        assert parse(parser, lines, 2) == expected
        assert parse(parser, lines, 2) == expected


T = "2021-08-03 01:00:00.1 UTC"
HEADER = ",".join(REQUIRED_COLUMNS)


def add_row(seq: str, oid: str, side: str, price: str, qty: str, time: str = T) -> str:
    return f"{seq},{oid},{side},{price},{qty},,,,,,,,,,,{time}"


class TestRules:
    parser = CsvParser(HEADER)

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            (add_row("7", "00042", "SELL", "229.130", "5"), (7, 0, "00042", 1, 229_130_000_000, 5)),
            (f"7,,,,,z,SELL,.5,0,,,,,,,{T}", (7, 1, "z", 1, 500_000_000, 0)),
            (f"7,,,,,,,,,z,SELL,,,,,{T}", (7, 2, "z", 1, 0, 0)),
            (f"7,,,,,,,,,,,z,SELL,1,3,{T}", (7, 3, "z", 1, 1_000_000_000, 3)),
        ],
    )
    def test_valid_rows(self, text: str, expected: tuple) -> None:
        """Each action's own columns are read; order ids stay opaque strings; prices in 1e-9."""
        event = self.parser.parse_row(text, 9)
        got = (event.seq, event.action, event.order_id, event.side, event.price, event.qty)
        assert got == expected
        assert (event.line, event.raw, event.time, event.instrument) == (9, text, T, "")

    def test_quoted_fields(self) -> None:
        """A quoted field (as a spreadsheet might write) is read as CSV."""
        event = self.parser.parse_row(f'7,"a,b",BUY,10,1,,,,,,,,,,,{T}', 2)
        assert event.order_id == "a,b"

    def test_missing_column_is_named(self, core: Any) -> None:
        """A header without a required column fails with the column's name."""
        with pytest.raises(HeaderError, match="trade_qty"):
            core.csv_parser(HEADER.replace(",trade_qty", ""))

    def test_column_named_twice_is_refused(self, core: Any) -> None:
        """A duplicated column that is read is ambiguous: refused, never the first one used."""
        with pytest.raises(HeaderError, match="add_price"):
            core.csv_parser(HEADER + ",add_price")
        core.csv_parser(HEADER + ",note,note")  # columns that are not read may repeat

    @pytest.mark.parametrize(
        ("field", "value", "reason"),
        [
            ("seq", "9" * 5000, Reason.SEQ),
            ("seq", str(2**64), Reason.SEQ),
            ("qty", "9" * 5000, Reason.QTY),
            ("qty", str(2**32), Reason.QTY),
            ("price", "1" + "0" * 400 + ".0", Reason.PRICE),
            ("price", "1" + "0" * 4400, Reason.PRICE),
            ("price", "0." + "0" * 9 + "1", Reason.PRICE),
            ("price", "9223372036.854775808", Reason.PRICE),
        ],
    )
    def test_numbers_beyond_the_bounds_are_rejected(
        self, core: Any, field: str, value: str, reason: Reason
    ) -> None:
        """Any length, any magnitude: rejected with its reason, never a crash (SPEC §4)."""
        values = {"seq": "1", "price": "10", "qty": "1"} | {field: value}
        text = add_row(values["seq"], "a", "BUY", values["price"], values["qty"])
        parser = core.csv_parser(HEADER)
        for _ in range(2):  # cold and warm memos
            assert parse(parser, [text], 3) == ([], [(3, reason, text)])

    def test_close_prices_stay_apart(self) -> None:
        """Two prices one nano apart are two levels, exactly (no float merging)."""
        a = self.parser.parse_row(add_row("1", "a", "BUY", "1000000000.000000001", "1"), 2)
        b = self.parser.parse_row(add_row("2", "b", "BUY", "1000000000.000000002", "1"), 3)
        assert b.price - a.price == 1

    def test_line_too_long_is_decided_in_bytes(self, core: Any) -> None:
        """A line over the limit in bytes is too long even when its characters are fewer."""
        parser = core.csv_parser(HEADER, max_line=100)
        wide = add_row("1", "é" * 40, "BUY", "1", "1")  # under 100 characters, over 100 bytes
        assert len(wide) < 100 < len(wide.encode())
        events, rejects = parse(parser, [wide, add_row("2", "a", "BUY", "1", "1")], 2)
        assert [r.reason for r in rejects] == [Reason.TOO_LONG] and [e.seq for e in events] == [2]


class TestInstrumentColumn:
    def test_found_by_name_and_kept_in_each_event(self, core: Any) -> None:
        """`instrument` (else `symbol`) names each row's instrument, opaque and case-sensitive."""
        for name in ("instrument", "symbol"):
            parser = core.csv_parser(f"{name},{HEADER}")
            events, rejects = parse(parser, [f"ESH1,{add_row('1', 'a', 'BUY', '1', '1')}"], 2)
            assert rejects == [] and events[0].instrument == "ESH1"
            assert parser.instrument_column == name

    def test_named_column_wins_and_must_exist(self, core: Any) -> None:
        """--instrument-column picks the column; a missing one is a header error."""
        parser = core.csv_parser(f"venue,symbol,{HEADER}", instrument_column="venue")
        events, _ = parse(parser, [f"XNAS,ES,{add_row('1', 'a', 'BUY', '1', '1')}"], 2)
        assert events[0].instrument == "XNAS"
        with pytest.raises(HeaderError, match="venue"):
            core.csv_parser(HEADER, instrument_column="venue")

    @pytest.mark.parametrize("name", ["", "x" * 65, "é" * 33])
    def test_bad_instrument_is_rejected(self, core: Any, name: str) -> None:
        """An empty instrument, or one over 64 bytes, is `bad instrument`."""
        parser = core.csv_parser(f"instrument,{HEADER}")
        text = f"{name},{add_row('1', 'a', 'BUY', '1', '1')}"
        for _ in range(2):
            assert parse(parser, [text], 2) == ([], [(2, Reason.INSTRUMENT, text)])

    def test_without_an_instrument_column_the_feed_is_one_instrument(self, core: Any) -> None:
        """No column: every event's instrument is ""."""
        events, _ = parse(core.csv_parser(HEADER), [add_row("1", "a", "BUY", "1", "1")], 2)
        assert events[0].instrument == ""


class TestNsTimes:
    """With an output schema (ns times, SPEC §14), a time beyond an int64 of ns since the epoch
    is a bad time, on each core and on either path; l1 takes every valid time."""

    FIT = (
        "1677-09-21 00:12:43.145225 UTC",  # the first whole microsecond that fits
        "1678-01-01 00:00:00 UTC",
        "2021-08-03 01:00:03.22333 UTC",
        "2261-12-31 23:59:59.999999 UTC",
        "2262-04-11 23:47:16.854775 UTC",  # the last
    )
    BEYOND = (
        "0001-01-01 00:00:00 UTC",
        "1677-09-21 00:12:43.145224 UTC",
        "1677-09-21 00:12:43 UTC",
        "2262-04-11 23:47:16.854776 UTC",
        "2262-04-11 23:47:17 UTC",
        "9999-12-31 23:59:59.999999 UTC",
    )

    @pytest.mark.parametrize("warm", [False, True])
    def test_times_beyond_ns_are_bad_times(self, core: Any, warm: bool) -> None:
        lines = [add_row(str(i + 1), "7", "BUY", "1", "1", t) for i, t in enumerate(self.FIT)]
        lines += [add_row(str(i + 10), "8", "SELL", "2", "1", t) for i, t in enumerate(self.BEYOND)]
        parser = core.csv_parser(HEADER, ns_times=True)
        if warm:  # memo tables (the Python core) and last-second caches (compiled) filled
            parse(parser, lines, 2)
        events, rejects = parse(parser, lines, 2)
        assert [e.time for e in events] == list(self.FIT)
        assert [(r.line, r.reason) for r in rejects] == [
            (2 + len(self.FIT) + i, Reason.TIME) for i in range(len(self.BEYOND))
        ]
        events, rejects = parse(core.csv_parser(HEADER), lines, 2)  # l1: text times
        assert len(events) == len(lines) and not rejects


class TestWordAtATime:
    """The compiled fast path reads a line, a seq and a time's fraction 8 bytes at a time, and
    remembers the last valid second: every length, every place of a bad byte, every word
    boundary and a batch's last bytes give what parse_row gives."""

    @staticmethod
    def check(core: Any, header: str, lines: list[str]) -> None:
        expected = reference(header, lines, 2)
        parser = core.csv_parser(header)
        assert parse(parser, lines, 2) == expected
        assert parse(parser, lines, 2) == expected
        # Each line alone: its last word is read up to the batch's end, not past it.
        for i, text in enumerate(lines):
            alone = reference(header, [text], 2 + i)
            assert parse(core.csv_parser(header), [text], 2 + i) == alone

    def test_seq_of_every_length_with_a_bad_byte_anywhere(self, core: Any) -> None:
        lines = []
        for size in range(1, 23):
            seq = "1234567890987654321012"[:size]
            lines.append(add_row(seq, "a", "BUY", "1", "1"))
            lines.append(add_row("0" * size + "7", "a", "BUY", "1", "1"))
            for at in range(size):
                for byte in ("/", ":", "a", " ", "é", "\x00"):
                    lines.append(add_row(seq[:at] + byte + seq[at + 1 :], "a", "BUY", "1", "1"))
        self.check(core, HEADER, lines)

    def test_time_fraction_of_every_length_with_a_bad_byte_anywhere(self, core: Any) -> None:
        lines = []
        for size in range(8):
            time = f"2021-08-03 01:00:03.{'1234567'[:size]} UTC"
            lines.append(add_row("1", "a", "BUY", "1", "1", time))
            for at in range(20, 20 + size):
                for byte in ("/", ":", "a", " ", "é"):
                    bad = time[:at] + byte + time[at + 1 :]
                    lines.append(add_row("1", "a", "BUY", "1", "1", bad))
        self.check(core, HEADER, lines)

    def test_a_second_differing_from_the_last_valid_one_in_any_byte(self, core: Any) -> None:
        good = "2024-02-29 23:59:59.5 UTC"
        lines = []
        for at in range(19):
            for byte in "0139x :-":
                lines.append(add_row("1", "a", "BUY", "1", "1", good))
                changed = good[:at] + byte + good[at + 1 :]
                lines.append(add_row("2", "a", "BUY", "1", "1", changed))
                lines.append(add_row("3", "a", "BUY", "1", "1", changed[:19] + " UTC"))
        self.check(core, HEADER, lines)

    @pytest.mark.parametrize("byte", [*map(chr, range(32)), "\x7f", '"', "é", ","])
    def test_any_odd_byte_at_any_place_of_a_word(self, core: Any, byte: str) -> None:
        """Control bytes, quotes, non-ASCII and extra commas in a column no check reads, at
        every offset in a word and in lines of every length around a word's end."""
        if byte == "\n":
            return
        header = f"{HEADER},note"
        lines = []
        for pad in range(17):
            base = add_row("1", "a", "BUY", "1", "1") + "," + "n" * pad
            lines.append(base)
            lines.append(base + byte)
            lines.append(base + byte + "n")
            lines.append(base + byte * 9)
        self.check(core, header, lines)

    def test_instrument_names_of_every_length(self, core: Any) -> None:
        header = f"{HEADER},instrument"
        lines = [f"{add_row('1', 'a', 'BUY', '1', '1')},{'I' * size}" for size in range(70)]
        lines += [f"{add_row('1', 'a', 'BUY', '1', '1')},{'ab' * size}" for size in range(40)]
        self.check(core, header, lines)

    @pytest.mark.parametrize("first", ["", "x", "x" * 300])
    def test_more_events_than_the_first_line_suggests(self, core: Any, first: str) -> None:
        """Room for a batch's events is guessed from its first line: a short or long first
        line (a reject) before many rows still gives every event."""
        lines = [first] + [add_row(str(i), "a", "BUY", "1", "1") for i in range(3000)]
        expected = reference(HEADER, lines, 2)
        assert parse(core.csv_parser(HEADER), lines, 2) == expected
        assert len(expected[0]) == 3000
