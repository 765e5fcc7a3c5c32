"""Many instruments (SPEC §9) in process: --instruments read as CSV fields, the names met kept in
the checkpoint, and each core's names of the instruments with a book. The same through the real
CLI is system/test_instruments.py's."""

from __future__ import annotations

import json

import pytest

from tests.conftest import HEADER, add


class TestInstrumentsOption:
    """--instruments as CSV fields, and the listed names met (issue 17)."""

    @pytest.mark.parametrize(
        ("text", "names"),
        [
            ("ES, NQ", ("ES", "NQ")),
            (" ES ,NQ,,ES", ("ES", "NQ")),
            ('"ES,H1", NQ', ("ES,H1", "NQ")),
            ('" NQ", "a ""b"""', (" NQ", 'a "b"')),
            ("E S,es", ("E S", "es")),
        ],
    )
    def test_names_are_csv_fields(self, text: str, names: tuple[str, ...]) -> None:
        """Whitespace around a name that is not quoted goes; a quoted one is kept whole, a
        comma or a quote inside it included; names are otherwise opaque, case-sensitive."""
        from l3tol1.options import format_instruments, instrument_list

        assert instrument_list(text) == names
        assert instrument_list(format_instruments(names)) == names

    def test_met_names_survive_a_restart(self) -> None:
        """The names met are in the checkpoint (so a resumed run does not call them unseen),
        and a checkpoint's names without them are damage, never a silent "none met"."""
        from l3tol1.core.naming import MboNamer, NamerState
        from l3tol1.core.plain import PlainDataError, PlainReader

        namer = MboNamer(frozenset({"ESH1"}))
        namer.key(1, 5482, 1_609_459_200_000_000_000, "ESH1")
        state = namer.snapshot()
        assert state.matched == ["ESH1"]
        restored = MboNamer(frozenset({"ESH1"}))
        restored.restore(state)
        assert restored.matched == {"ESH1"}
        stored = json.loads(json.dumps(state.to_plain()))
        assert NamerState.from_plain(stored, "names", PlainReader()).matched == ["ESH1"]
        del stored["matched"]
        with pytest.raises(PlainDataError, match=r"names\.matched: missing"):
            NamerState.from_plain(stored, "names", PlainReader())

    def test_both_cores_name_the_instruments_with_a_book(self, core) -> None:  # type: ignore[no-untyped-def]
        """`Instruments.names()`: the kept instruments met in an applied event, on each core."""
        header = "instrument," + HEADER
        rows = [f"A,{add(1, 'a', 'BUY', '10', '1')}", f"C,{add(2, 'a', 'BUY', '10', '1')}"]
        events, rejects = core.csv_parser(header).parse("".join(r + "\n" for r in rows).encode(), 2)
        assert not rejects
        if type(events) is list:
            events = core.events(events)
        instruments = core.instruments(["A", "B"])
        assert instruments.names() == frozenset()
        instruments.apply(events, core.quotes(), [])
        assert instruments.names() == {"A"}
