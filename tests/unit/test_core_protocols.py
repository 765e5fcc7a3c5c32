"""The seam between the cores (issue 18): both cores are one `Core`, filled with objects that
have every member of core/protocols.py's protocols."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import l3tol1
from l3tol1.core import CORES, Core, available, load
from l3tol1.core import protocols as p
from l3tol1.core.csv_parser import REQUIRED_COLUMNS
from l3tol1.core.mbo import MboMetadata
from l3tol1.core.naming import MboNamer
from l3tol1.core.records import Action, Event, Side
from l3tol1.core.schemas import SCHEMAS
from tests.conftest import ROOT

HEADER = ",".join(REQUIRED_COLUMNS)
EVENT = Event(1, Action.ADD, "", "7", Side.BUY, 10**9, 5, "2024-01-02 03:04:05.000006 UTC", 2,
              "raw", True)  # fmt: skip


def members(protocol: type) -> list[str]:
    """The names a protocol asks for (its methods, properties and attributes)."""
    names = {n for n in vars(protocol) if not n.startswith("_") or n in ("__len__", "__iter__")}
    names |= set(getattr(protocol, "__annotations__", {}))
    return sorted(names - {"__annotations__"})


def objects(core: Core[Any, Any, Any]) -> list[tuple[type, object]]:
    """One object of each kind the core makes, with the protocol it must satisfy."""
    return [
        (p.CsvParser, core.csv_parser(HEADER)),
        (p.MboParser, core.mbo_parser(MboMetadata("test", 56), MboNamer())),
        (p.Feed, core.feed()),
        (p.Instruments, core.instruments()),
        (p.Formatter, core.formatter()),
        (p.Events, core.events([EVENT])),
        (p.Quotes, core.quotes()),
        (p.Depths, core.depths(SCHEMAS["mbp-10"])),
        (p.RowFormatter, core.row_formatter(SCHEMAS["mbp-1"])),
        (p.Rows, core.rows()),
    ]


def test_each_object_has_every_member_of_its_protocol(core: Core[Any, Any, Any]) -> None:
    """What mypy checks through the stub, checked on the real objects of each core."""
    for protocol, obj in objects(core):
        missing = [name for name in members(protocol) if not hasattr(obj, name)]
        assert not missing, f"{core.name}: {type(obj).__name__} lacks {missing}"
        assert isinstance(obj, protocol)


def test_the_members_are_what_the_protocol_says(core: Core[Any, Any, Any]) -> None:
    """The checked members exist (the test above is not vacuous)."""
    assert "push" in members(p.Feed) and "received" in members(p.Feed)
    assert "__len__" in members(p.Events) and "apply" in members(p.Instruments)


def test_a_core_round_trips_its_own_containers(core: Core[Any, Any, Any]) -> None:
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
def test_the_stub_is_the_compiled_module(tmp_path: Path) -> None:
    """core/_compiled.pyi, which mypy checks the compiled core's makers with, says what the
    built module has: every name, method and signature (mypy's stubtest; what it cannot see is
    listed in tests/stubtest_allowlist.txt)."""
    # The libraries without stubs that the package imports for mypy (pyproject.toml lists them
    # too, but with settings for the whole package that stubtest reports as unused)
    config = tmp_path / "mypy.ini"
    config.write_text(
        "[mypy]\n[mypy-pyarrow.*,aiofiles.*,uvloop.*,nats.*]\nignore_missing_imports = True\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "l3tol1.core._compiled",
         "--allowlist", str(ROOT / "tests" / "stubtest_allowlist.txt"),
         "--mypy-config-file", str(config)],
        cwd=ROOT / "service",
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


# Every call of the rest of the package, with None where a container, bytes, a list or a name
# belongs: run in a child process each (a crash must not take the test run with it).
NONE_CALLS = """
import os, sys
from l3tol1.core import load
from l3tol1.core.mbo import MboMetadata
from l3tol1.core.naming import MboNamer
from l3tol1.core.schemas import SCHEMAS
from tests.unit.test_core_protocols import EVENT, HEADER

core = load(sys.argv[1])
MBP = SCHEMAS["mbp-10"]
twice = [EVENT, EVENT]  # the second is a duplicate (a reject) and an add of a live order
calls = {
    "feed.push events": lambda: core.feed().push(None, 0.0, core.events(), []),
    "feed.push ready": lambda: core.feed(start_seq=1).push(core.events([EVENT]), 0.0, None, []),
    "feed.push rejects": lambda: core.feed(start_seq=1).push(core.events(twice), 0.0,
                                                             core.events(), None),
    "feed.expire": lambda: core.feed(gap_timeout=0.0).expire(1.0, None),
    "feed.finish": lambda: core.feed().finish(None),
    "apply events": lambda: core.instruments().apply(None, core.quotes(), []),
    "apply quotes": lambda: core.instruments().apply(core.events([EVENT]), None, []),
    "apply anomalies": lambda: core.instruments().apply(core.events(twice), core.quotes(), None),
    "book": lambda: core.instruments().book(None),
    "heap_sizes": lambda: core.instruments().heap_sizes(None),
    "last_quote": lambda: core.instruments().last_quote(None),
    "format": lambda: core.formatter().format(None),
    "csv parse": lambda: core.csv_parser(HEADER).parse(None, 1),
    "csv parse_row": lambda: core.csv_parser(HEADER).parse_row(None, 1),
    "mbo parse": lambda: core.mbo_parser(MboMetadata("x", 56), MboNamer()).parse(None, 1),
    "events": lambda: core.events(None),
    "pack_events": lambda: core.pack_events(None, 1, [-1], 100),
    "instrument_days": lambda: core.instrument_days(None),
    "unpack_events": lambda: core.unpack_events(None),
    "pack_quotes": lambda: core.pack_quotes(None, 100),
    "unpack_quotes": lambda: core.unpack_quotes(None),
    "depths events": lambda: core.depths(MBP).apply(None, core.rows(), []),
    "depths rows": lambda: core.depths(MBP).apply(core.events([EVENT]), None, []),
    "depths anomalies": lambda: core.depths(MBP).apply(core.events(twice), core.rows(), None),
    "depths gaps": lambda: core.depths(MBP).apply(core.events([EVENT]), core.rows(), [], None),
    "depths finish": lambda: core.depths(SCHEMAS["bbo-1s"]).finish(None),
    "depths book": lambda: core.depths(MBP).book(None),
    "depths restore": lambda: core.depths(MBP).restore(None),
    "row format": lambda: core.row_formatter(MBP).format(None),
}
for name, call in calls.items():
    pid = os.fork()
    if pid == 0:
        try:
            call()
        except Exception:
            pass
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if status:
        print(name)
"""


def test_none_is_refused_never_a_crash(core: Core[Any, Any, Any]) -> None:
    """A core given None for a container, bytes, a list or a name raises (or ignores it, where
    the Python core does): the compiled one never reads the None object as one of its own."""
    tree = Path(l3tol1.__file__).parent.parent  # this build: the sanitized one under sanitize
    result = subprocess.run(
        [sys.executable, "-c", NONE_CALLS, core.name],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{tree}:{ROOT}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [], "crashed: " + ", ".join(result.stdout.splitlines())


@pytest.mark.skipif("L3TOL1_SANITIZED_TREE" not in os.environ, reason="only under make sanitize")
def test_make_sanitize_tests_the_sanitized_build() -> None:
    """`make sanitize` runs these tests on its own build of the compiled core (built with
    AddressSanitizer: its runtime is in the process), not on the normal one."""
    from l3tol1.core import _compiled

    assert _compiled.__file__.startswith(os.environ["L3TOL1_SANITIZED_TREE"]), _compiled.__file__
    assert "libasan" in Path("/proc/self/maps").read_text()
