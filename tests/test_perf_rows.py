"""RowParser.parse's fast path against parse_row, the reference (SPEC §1, §4).

The fast path in `parse` only takes rows whose values the memo tables already hold, so each
case is parsed twice by the same parser: once with cold memos (every row goes to parse_row)
and once with warm ones (most rows take the fast path). Both must equal, event for event and
reject for reject, what parse_row makes of each line on its own.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l3tol1.rows import REQUIRED_COLUMNS, Reason, RowParser

GOOD = {
    "seq": ["0", "7", "1627942268920653171"],
    "time": [
        "2021-08-03 01:00:03.223330 UTC",
        "2021-08-03 01:00:03.22333 UTC",
        "2021-08-03 01:00:03.2 UTC",
        "2021-08-03 01:00:03. UTC",
        "2021-08-03 01:00:03 UTC",
    ],
    "price": ["229", "228.2", "229.13", ".5", "229.130"],
    "qty": ["1", "300", "300.0"],
    "id": ["1", "2", "7457972527797790256", "é"],
    "side": ["BUY", "SELL"],
}
BAD = {
    "seq": ["-1", "+7", " 7", "1.62794E+18", "٣", ""],
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
    "price": ["0", "0.0", "-1", "nan", "1e5", "1.62794E+18", "1.2345678901234567", ""],
    "qty": ["0.5", "-1", "1_000", "+3", "٣", " 5", "1e2", ""],
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
    parser = RowParser(header)
    events, rejects = [], []
    for i, text in enumerate(lines):
        result = parser.parse_row(text, first_line + i)
        (rejects if len(result) == 3 else events).append(result)
    return events, rejects


class TestFastPath:
    @settings(max_examples=400, deadline=None)
    @given(cases())
    def test_parse_equals_parse_row(self, case: tuple[str, list[str]]) -> None:
        """Cold or warm memos, parse gives what parse_row gives, line by line."""
        header, lines = case
        expected = reference(header, lines, 2)
        parser = RowParser(header)
        assert parser.parse(lines, 2) == expected  # cold: memos fill up
        assert parser.parse(lines, 2) == expected  # warm: the fast path
        assert parser.parse(iter(lines), 2) == expected  # any iterable of lines

    @pytest.mark.parametrize(
        # The last column is the time, or an extra one that no check reads (a CR there).
        "columns",
        [list(REQUIRED_COLUMNS), [*REQUIRED_COLUMNS[::-1], "venue"]],
    )
    def test_every_single_fault(self, columns: list[str]) -> None:
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
        parser = RowParser(header)
        assert parser.parse(lines, 2) == expected
        assert parser.parse(lines, 2) == expected
        assert len(expected[0]) > 4 * 4 and len(expected[1]) > len(lines) // 2

    def test_quote_with_bare_cr_is_rejected_not_raised(self) -> None:
        """csv cannot read a quoted row with a CR outside quotes: a reject, never an error."""
        header = ",".join(REQUIRED_COLUMNS)
        text = '1,"a",BUY,1,1,,,,,,,,,,\r,2021-08-03 01:00:03 UTC'
        assert RowParser(header).parse([text], 5) == ([], [(5, Reason.FIELD_COUNT, text)])

    def test_fast_path_is_taken(self) -> None:
        """With warm memos, well-formed rows of every action skip parse_row, CRLF or not."""
        header = ",".join(REQUIRED_COLUMNS)
        t = "2021-08-03 01:00:03.22333 UTC"
        lines = [
            f"1,a,BUY,229.13,300,,,,,,,,,,,{t}",
            f"2,,,,,a,BUY,229.1,300.0,,,,,,,{t}",
            f"3,,,,,,,,,a,BUY,,,,,{t}",
            f"4,,,,,,,,,,,a,SELL,229,5,{t}",
        ]
        parser = RowParser(header)
        expected = parser.parse(lines, 2)
        calls = []
        parser.parse_row = lambda text, line: calls.append(line) or (line, "x", text)  # type: ignore[method-assign]
        assert parser.parse(lines, 2) == expected
        assert parser.parse([line + "\r" for line in lines], 2) == expected
        assert calls == []

    @pytest.mark.parametrize(
        "endings",
        [["\r"] * 4, ["\r", "\r", "\r\r", "\r"], ["\r", "", "\r", "\r"], ["", "", "", "\r"]],
    )
    def test_crlf_batches(self, endings: list[str]) -> None:
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
        parser = RowParser(header)
        expected = reference(header, lines, 2)
        assert parser.parse(lines, 2) == expected
        assert parser.parse(lines, 2) == expected
