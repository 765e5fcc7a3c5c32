"""Hostile input to the parser (SPEC §1, §4): random text and spreadsheet-mangled rows are an event
or a reject, never an error. The same input through the whole pipeline is
integration/test_pipeline_fuzz.py's; the strategies are tests/fuzz.py's.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from l3tol1.core.csv_parser import CsvParser
from l3tol1.core.records import Event, Reject
from tests.conftest import HEADER
from tests.fuzz import REASONS, fuzz, good_rows, layouts, mangle


class TestParserFuzz:
    @fuzz
    @given(st.text(max_size=300))
    def test_any_text_is_an_event_or_a_reject(self, text: str) -> None:
        """parse_row never raises; it returns an event or a reject with a known reason."""
        result = CsvParser(HEADER).parse_row(text, 7)
        if isinstance(result, Reject):
            assert result.line == 7 and result.reason in REASONS
            assert result.raw == text.removesuffix("\r")
        else:
            assert isinstance(result, Event) and isinstance(result.seq, int) and result.line == 7

    @fuzz
    @given(st.data())
    def test_mangled_rows_never_crash(self, data: st.DataObject) -> None:
        """Rows with spreadsheet-mangled cells are parsed or rejected, never an error."""
        columns = data.draw(layouts())
        parser = CsvParser(",".join(columns))
        rows = [data.draw(mangle(data.draw(good_rows(columns)))) for _ in range(3)]
        for result in (parser.parse_row(row, 2) for row in rows):
            assert isinstance(result, Event | Reject)
        events, rejects = parser.parse("".join(r + "\n" for r in rows).encode(), 2)
        assert len(events) + len(rejects) == 3
