"""l3tol1-plot, the real script: PNGs of the reference output and of days of data (downsampled,
spikes kept), and one line with exit 2 when it cannot draw. Downsampling and reading L1 files
in process are unit/test_plot.py's.

The tests that draw need matplotlib (the `plot` extra) and are skipped without it.
"""

from __future__ import annotations

import random
import re
import struct
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from l3tol1.plot import NEEDS_MATPLOTLIB, read_l1
from tests.conftest import L1_HEADER, REFERENCE_OUTPUT, cli_env

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_plot(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m l3tol1.plot ARGS` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "l3tol1.plot", *map(str, args)],
        env=env or cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG, after checking its signature."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_MAGIC, "not a PNG"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def plotted_points(stdout: str) -> tuple[int, int, int]:
    """(rows, price points, size points) from the script's one line of output."""
    match = re.search(r"(\d+) rows, (\d+) price points and (\d+) size points", stdout)
    assert match, stdout
    rows, prices, sizes = map(int, match.groups())
    return rows, prices, sizes


def synthetic_l1(path: Path, rows: int, days: float, seed: int = 7) -> dict[str, object]:
    """A random-walk L1 file of ``rows`` rows over ``days`` days, with a few planted spikes."""
    rng = random.Random(seed)
    start = datetime(2021, 8, 3, tzinfo=UTC)
    step = days * 86_400 / rows
    spikes = {
        "ask_spike_row": rows // 3,  # one row with the ask far above everything else
        "ask_spike": 999.5,
        "bid_dip_row": rows // 2,  # one row with the bid far below
        "bid_dip": 1.25,
        "size_dip_row": 2 * rows // 3,  # one row with a bid size of 1 (others >= 10)
        "crossed_row": 3 * rows // 4,  # one crossed book
    }
    mid = 22_900  # in cents
    lines = [L1_HEADER]
    for i in range(rows):
        mid += rng.choice((-1, 0, 0, 1))
        half = rng.choice((1, 1, 2, 5))
        bid, ask = (mid - half) / 100, (mid + half) / 100
        bid_size, ask_size = rng.choice((10, 300, 1000)), rng.choice((10, 300, 1000, 5000))
        if i == spikes["ask_spike_row"]:
            ask = spikes["ask_spike"]
        if i == spikes["bid_dip_row"]:
            bid = spikes["bid_dip"]
        if i == spikes["size_dip_row"]:
            bid_size = 1
        if i == spikes["crossed_row"]:
            bid, ask = ask + 0.05, bid
        moment = start + timedelta(seconds=i * step)
        lines.append(
            f"{moment:%Y-%m-%d %H:%M:%S.%f} UTC,{bid:g},{ask:g},{bid_size},{ask_size},{i}\n"
        )
    path.write_text("".join(lines), encoding="utf-8")
    return spikes


class TestChart:
    def test_reference_chart(self, tmp_path: Path) -> None:
        pytest.importorskip("matplotlib")
        out = tmp_path / "bbo.png"
        result = run_plot(REFERENCE_OUTPUT, "-o", out)
        assert result.returncode == 0, result.stderr
        width, height = png_size(out)
        assert (width, height) == (1560, 900)
        assert 30_000 < out.stat().st_size < 5_000_000
        rows, prices, sizes = plotted_points(result.stdout)
        assert rows == 19_290
        assert 0 < prices <= 5000 and 0 < sizes <= 5000

    @pytest.mark.slow
    def test_days_of_data_are_downsampled(self, tmp_path: Path) -> None:
        """300,000 rows over three days: a PNG, at most --max-points points, spikes kept."""
        pytest.importorskip("matplotlib")
        from l3tol1.plot import build_figure

        source = tmp_path / "days.csv"
        spikes = synthetic_l1(source, rows=300_000, days=3)
        out = tmp_path / "days.png"
        result = run_plot(source, "-o", out, "--max-points", "2000", "--title", "Three days")
        assert result.returncode == 0, result.stderr
        png_size(out)
        assert 30_000 < out.stat().st_size < 5_000_000
        rows, prices, sizes = plotted_points(result.stdout)
        assert rows == 300_000
        assert 1000 < prices <= 2000 and 1000 < sizes <= 2000

        # The same figure in this process, to look at what is drawn.
        fig, counts = build_figure(read_l1(source), max_points=2000, title="Three days")
        assert (counts["price_points"], counts["size_points"]) == (prices, sizes)
        price_axes, size_axes = fig.axes
        lines = {line.get_label(): line for ax in fig.axes for line in ax.lines}
        assert set(lines) == {"bid", "ask", "bid size", "ask size"}
        for line in lines.values():
            assert len(line.get_xdata()) <= 2000
        assert max(lines["ask"].get_ydata()) == spikes["ask_spike"]
        assert min(lines["bid"].get_ydata()) == spikes["bid_dip"]
        assert min(lines["bid size"].get_ydata()) == 1
        (crossed,) = (c for c in price_axes.collections if "crossed" in c.get_label())
        assert len(crossed.get_offsets()) == 1
        assert fig.texts[0].get_text() == "Three days"  # the suptitle
        assert size_axes.get_xlabel() == "time (UTC)"

    def test_bad_input_is_exit_2(self, tmp_path: Path) -> None:
        pytest.importorskip("matplotlib")
        result = run_plot(tmp_path / "missing.csv", "-o", tmp_path / "x.png")
        assert result.returncode == 2
        assert result.stderr.startswith("l3tol1-plot: error: cannot read")
        assert len(result.stderr.splitlines()) == 1
        assert not (tmp_path / "x.png").exists()

    def test_missing_matplotlib_is_one_line_and_exit_2(self, tmp_path: Path) -> None:
        """Run as if matplotlib were not installed (a None entry in sys.modules blocks import)."""
        argv = [str(REFERENCE_OUTPUT), "-o", str(tmp_path / "x.png")]
        code = (
            "import sys; sys.modules['matplotlib'] = None; from l3tol1.plot import main; "
            f"raise SystemExit(main({argv!r}))"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 2
        assert result.stderr == NEEDS_MATPLOTLIB + "\n"
        assert NEEDS_MATPLOTLIB == "l3tol1-plot needs matplotlib: pip install 'l3tol1[plot]'"
        assert not (tmp_path / "x.png").exists()
