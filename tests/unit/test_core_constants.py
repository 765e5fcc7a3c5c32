"""The values both cores share are the Python core's (issue 18): the compiled core is checked
against them when it is imported, and refuses to load when one differs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from l3tol1.core import available
from l3tol1.core.constants import check, mismatches, reference
from tests.conftest import ROOT

needs_compiled = pytest.mark.skipif(not available(), reason="the compiled core was not built")


@needs_compiled
def test_the_compiled_core_was_built_with_the_python_cores_values() -> None:
    """Every shared value, on both sides (a value added on one side only is a mismatch)."""
    from l3tol1.core._compiled import compiled_values

    values = compiled_values()
    assert mismatches(values, reference()) == []
    assert len(values) > 60  # enums, bounds, the MBO and wire layouts


def test_a_wrong_value_is_named() -> None:
    """The check against a deliberately wrong table: each difference named, import refused."""
    wrong = reference()
    wrong["Action.NONE"] = 7
    wrong["wire.event.side"] = 42
    del wrong["mbo.F_LAST"]
    assert mismatches(wrong, reference()) == [
        "Action.NONE: compiled 7, Python core 6",
        "mbo.F_LAST: compiled (none), Python core 128",
        "wire.event.side: compiled 42, Python core 49",
    ]
    with pytest.raises(ImportError, match=r"does not match the Python core: Action\.NONE: "):
        check(wrong)
    check(reference())  # and the right one passes


def test_the_reference_reads_the_layouts_from_the_python_core() -> None:
    """Offsets come from the struct formats the Python core packs with (not typed in twice)."""
    values = reference()
    assert values["wire.event_size"] == 64 and values["wire.quote_size"] == 56
    assert values["wire.event.inst_size"] == 52 and values["wire.quote.time_size"] == 52
    assert values["wire.event.ts_event"] == 40 and values["mbo.at.ts_event"] == 8
    assert values["mbo.record_size"] == 56 and values["mbo.at.sequence"] == 52
    assert values["wire.time_fields"][0] == (46, 14) and values["wire.time_fields"][-1] == (0, 20)


@needs_compiled
def test_a_compiled_core_older_than_the_python_core_is_refused(tmp_path: Path) -> None:
    """The Python core changed a shared value and the compiled core was not rebuilt: "compiled"
    fails naming the value; "auto" runs the Python core, with a warning that says why."""
    tree = tmp_path / "site" / "l3tol1"
    shutil.copytree(ROOT / "service" / "l3tol1", tree, ignore=shutil.ignore_patterns("__pycache__"))
    book = tree / "core" / "book.py"
    book.write_text(book.read_text().replace("COMPACT_SLACK = 1024", "COMPACT_SLACK = 2048"))
    script = (
        "import warnings\n"
        "from l3tol1.core import load\n"
        "try:\n"
        "    load('compiled')\n"
        "except ImportError as exc:\n"
        "    print('compiled:', exc)\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    print('auto:', load('auto').name)\n"
        "print('warned:', [str(w.message) for w in caught])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={"PYTHONPATH": str(tree.parent)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = result.stdout.splitlines()
    expected = "book.COMPACT_SLACK: compiled 1024, Python core 2048"
    assert lines[0].startswith("compiled: the compiled core does not match")
    assert expected in lines[0]
    assert lines[1] == "auto: python"
    assert expected in lines[2] and "running the Python core" in lines[2]
