"""The seam between the cores (issue 18): both cores are one `Core`, filled with objects that
have every member of core/protocols.py's protocols."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from l3tol1.core import CORES, Core, available, load
from l3tol1.core import protocols as p
from l3tol1.core.csv_parser import REQUIRED_COLUMNS
from l3tol1.core.mbo import MboMetadata, MboNamer
from l3tol1.core.records import Action, Event, Side
from tests.conftest import ROOT

HEADER = ",".join(REQUIRED_COLUMNS)
EVENT = Event(1, Action.ADD, "", "7", Side.BUY, 10**9, 5, "2024-01-02 03:04:05.000006 UTC", 2,
              "raw", True)  # fmt: skip


def members(protocol: type) -> list[str]:
    """The names a protocol asks for (its methods, properties and attributes)."""
    names = {n for n in vars(protocol) if not n.startswith("_") or n in ("__len__", "__iter__")}
    names |= set(getattr(protocol, "__annotations__", {}))
    return sorted(names - {"__annotations__"})


def objects(core: Core[Any, Any]) -> list[tuple[type, object]]:
    """One object of each kind the core makes, with the protocol it must satisfy."""
    return [
        (p.CsvParser, core.csv_parser(HEADER)),
        (p.MboParser, core.mbo_parser(MboMetadata("test", 56), MboNamer())),
        (p.Feed, core.feed()),
        (p.Instruments, core.instruments()),
        (p.Formatter, core.formatter()),
        (p.Events, core.events([EVENT])),
        (p.Quotes, core.quotes()),
    ]


def test_each_object_has_every_member_of_its_protocol(core: Core[Any, Any]) -> None:
    """What mypy checks through the stub, checked on the real objects of each core."""
    for protocol, obj in objects(core):
        missing = [name for name in members(protocol) if not hasattr(obj, name)]
        assert not missing, f"{core.name}: {type(obj).__name__} lacks {missing}"
        assert isinstance(obj, protocol)


def test_the_members_are_what_the_protocol_says(core: Core[Any, Any]) -> None:
    """The checked members exist (the test above is not vacuous)."""
    assert "push" in members(p.Feed) and "received" in members(p.Feed)
    assert "__len__" in members(p.Events) and "apply" in members(p.Instruments)


def test_a_core_round_trips_its_own_containers(core: Core[Any, Any]) -> None:
    """The makers a `Core` holds work together: events packed and unpacked by the same core."""
    events = core.events([EVENT])
    assert list(events) == [EVENT]
    (packed,), skipped = core.pack_events(events, 1, [-1], 1 << 20)
    assert skipped == 0 and [e.seq for e in core.unpack_events(packed[1])] == [1]
    assert core.instrument_days(events) == set()


@pytest.mark.parametrize("name", CORES)
def test_load_names_the_core(name: str) -> None:
    core = load(name)
    assert isinstance(core, Core)
    assert core.name in ("python", "compiled")
    if name != "auto":
        assert core.name == name


@pytest.mark.skipif(not available(), reason="the compiled core was not built")
def test_the_stub_is_the_compiled_module() -> None:
    """core/_compiled.pyi, which mypy checks the compiled core's makers with, says what the
    built module has: every name, method and signature (mypy's stubtest; what it cannot see is
    listed in tests/stubtest_allowlist.txt)."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "l3tol1.core._compiled",
         "--allowlist", str(ROOT / "tests" / "stubtest_allowlist.txt")],
        cwd=ROOT / "service",
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
