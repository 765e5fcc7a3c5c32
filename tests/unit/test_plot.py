"""l3tol1-plot: downsampling (pure), reading L1 files, and the real script writing PNGs.

The tests that draw need matplotlib (the `plot` extra) and are skipped without it; the others
run everywhere.
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
from hypothesis import given, settings
from hypothesis import strategies as st

from l3tol1.plot import NEEDS_MATPLOTLIB, PlotError, downsample, parse_time, read_l1
from tests.conftest import REFERENCE_OUTPUT, cli_env

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
L1_HEADER = "time,bid_price,ask_price,bid_size,ask_size,seq_num\n"


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


# --- downsample (pure) ---------------------------------------------------------------------------


def buckets_of(times: list[float], n_buckets: int) -> list[int]:
    """Equal time buckets, as documented: floor((t - start) * n / span), the last one closed."""
    start, end = min(times), max(times)
    scale = n_buckets / (end - start) if end > start else 0.0
    return [min(int((t - start) * scale), n_buckets - 1) for t in times]


class TestDownsample:
    def test_small_inputs_are_kept_whole(self) -> None:
        times = [0.0, 1.0, 2.0, 3.0]
        assert downsample(times, [[1.0, 2.0, 3.0, 4.0]], 10) == [0, 1, 2, 3]
        assert downsample([], [[]], 10) == []

    def test_too_small_a_budget_is_refused(self) -> None:
        with pytest.raises(ValueError, match="at least 7"):
            downsample([0.0] * 100, [[0.0] * 100, [0.0] * 100], 6)
        with pytest.raises(ValueError, match="one value per time"):
            downsample([0.0, 1.0], [[0.0]], 10)

    def test_keeps_ends_extremes_and_bucket_lasts_within_budget(self) -> None:
        rng = random.Random(3)
        n, max_points = 100_000, 1_000
        times = sorted(rng.uniform(0, 86_400 * 3) for _ in range(n))
        a = [rng.gauss(0, 1) for _ in range(n)]
        b = [rng.gauss(0, 1) for _ in range(n)]
        a[12_345] = 50.0  # a one-row spike up
        b[67_890] = -50.0  # and one down
        kept = downsample(times, [a, b], max_points)

        assert kept == sorted(set(kept))
        assert len(kept) <= max_points
        assert len(kept) > max_points // 2  # the budget is used, not wasted
        assert kept[0] == 0 and kept[-1] == n - 1
        assert 12_345 in kept and 67_890 in kept

        per_bucket = 2 * 2 + 1
        bucket = buckets_of(times, (max_points - 2) // per_bucket)
        kept_set = set(kept)
        members: dict[int, list[int]] = {}
        for i, bk in enumerate(bucket):
            members.setdefault(bk, []).append(i)
        for rows in members.values():
            assert rows[-1] in kept_set, "the last row of each bucket is kept"
            kept_here = [i for i in rows if i in kept_set]
            for values in (a, b):
                inside = [values[i] for i in rows]
                shown = [values[i] for i in kept_here]
                assert min(shown) == min(inside) and max(shown) == max(inside)

    def test_all_at_one_instant(self) -> None:
        """No time span: one bucket, still its min, max and last of each series."""
        values = [5.0, 1.0, 9.0, 3.0] * 10
        kept = downsample([7.0] * 40, [values], 10)
        assert [values[i] for i in kept] == [5.0, 1.0, 9.0, 3.0]

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.floats(0, 1e6, allow_nan=False),
                st.integers(-1000, 1000),
                st.integers(0, 50),
            ),
            min_size=1,
            max_size=300,
        ),
        st.integers(7, 60),
    )
    def test_properties(self, rows: list[tuple[float, int, int]], max_points: int) -> None:
        """For any input: within budget, increasing, first and last kept, extremes kept."""
        rows.sort()
        times = [r[0] for r in rows]
        a = [float(r[1]) for r in rows]
        b = [float(r[2]) for r in rows]
        kept = downsample(times, [a, b], max_points)
        assert len(kept) <= max_points
        assert kept == sorted(set(kept))
        assert kept[0] == 0 and kept[-1] == len(rows) - 1
        for values in (a, b):
            shown = [values[i] for i in kept]
            assert min(shown) == min(values) and max(shown) == max(values)


# --- reading -------------------------------------------------------------------------------------


class TestRead:
    def test_parse_time(self) -> None:
        base = parse_time("2021-08-03 01:00:01 UTC")
        assert base == datetime(2021, 8, 3, 1, 0, 1, tzinfo=UTC).timestamp()
        assert parse_time("2021-08-03 01:00:01.5 UTC") == base + 0.5
        assert parse_time("2021-08-03 01:00:01.107502 UTC") == pytest.approx(base + 0.107502)
        for bad in ("2021-08-03 01:00:01", "2021-08-03 01:00:01+01:00 UTC", "yesterday UTC"):
            with pytest.raises(ValueError):
                parse_time(bad)

    def test_reads_the_reference_output(self) -> None:
        data = read_l1(REFERENCE_OUTPUT)
        assert len(data) == 19_290
        assert (data.bid[0], data.ask[0], data.bid_size[0], data.ask_size[0]) == (
            228.2,
            230.2,
            300,
            300,
        )
        assert data.times[0] == pytest.approx(parse_time("2021-08-03 01:00:01.107502 UTC"))

    @pytest.mark.parametrize(
        ("content", "words"),
        [
            ("", "empty"),
            ("time,bid_price,ask_price,bid_size\n", "no column ask_size"),
            (L1_HEADER, "no L1 rows"),
            (L1_HEADER + "2021-08-03 01:00:01 UTC,228.2,230.2,300,300,1\nx,1,2,3\n", "line 3"),
            (L1_HEADER + "2021-08-03 01:00:01 UTC,228.2,230.2,3.5,300,1\n", "line 2"),
        ],
    )
    def test_bad_input(self, tmp_path: Path, content: str, words: str) -> None:
        path = tmp_path / "l1.csv"
        path.write_text(content, encoding="utf-8")
        with pytest.raises(PlotError, match=words):
            read_l1(path)

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


# --- the real script (needs matplotlib) ----------------------------------------------------------


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
