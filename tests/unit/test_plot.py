"""l3tol1-plot in process: downsampling (pure) and reading L1 files. The real script writing PNGs
is system/test_plot.py's."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l3tol1.plot import PlotError, downsample, parse_time, read_l1
from tests.conftest import L1_HEADER, REFERENCE_OUTPUT

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
