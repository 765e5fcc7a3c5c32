"""l3tol1 plot (and its alias l3tol1-plot): a chart of one instrument of an output of l3tol1 (L1
or a schema's, CSV or Parquet) as a PNG.

Upper panel: best bid and best ask over time as step lines (a value holds until the next row),
with the spread shaded between them; a crossed or locked book (bid >= ask) is marked by a dot.
Lower panel: the sizes at the best bid and ask.

A day of L1 rows has far more points than a chart has pixels, so when a panel has more than
``--max-points`` rows they are downsampled by time (see ``downsample``): the time range is cut into
equal buckets and, in each bucket, the rows holding each series' minimum and maximum are kept, and
the bucket's last row. Min and max keep every spike visible, however short (a one-row jump of the
ask, a wide or crossed spread: the spread is one of the series of the price panel); the last row
makes each step line leave the bucket at the value it really had.

matplotlib is an optional dependency (``pip install 'l3tol1[plot]'``); without it the command says
so in one line and exits 2. Exit status: 0 when the chart is written, 2 for bad usage, a missing or
malformed input, or missing matplotlib, 1 when the chart cannot be written.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["L1Data", "PlotError", "build_figure", "downsample", "main", "parse_time", "read_l1"]

NEEDS_MATPLOTLIB = "l3tol1-plot needs matplotlib: pip install 'l3tol1[plot]'"
COLUMNS = ("time", "bid_price", "ask_price", "bid_size", "ask_size")
BID_COLOUR = "#1a7f37"
ASK_COLOUR = "#cf222e"
SPREAD_COLOUR = "#8c959f"
CROSSED_COLOUR = "#fb8500"


class PlotError(Exception):
    """A bad input: a missing file, column or value (one readable line)."""


@dataclass
class L1Data:
    """The columns of an L1 CSV; ``times`` in seconds since the epoch (UTC)."""

    times: list[float] = field(default_factory=list)
    bid: list[float] = field(default_factory=list)
    ask: list[float] = field(default_factory=list)
    bid_size: list[int] = field(default_factory=list)
    ask_size: list[int] = field(default_factory=list)
    instrument: str | None = None  # the instrument drawn, when the output has several

    def __len__(self) -> int:
        return len(self.times)


def parse_time(text: str) -> float:
    """``2021-08-03 01:00:01.107502 UTC`` (0 to 6 fraction digits) as seconds since the epoch."""
    if not text.endswith(" UTC"):
        raise ValueError(f"time {text!r} does not end in ' UTC'")
    moment = datetime.fromisoformat(text[:-4])
    if moment.tzinfo is not None:
        raise ValueError(f"time {text!r} has an offset before 'UTC'")
    return moment.replace(tzinfo=UTC).timestamp()


# The columns of each kind of output: time, bid, ask, bid size, ask size (SPEC §2, §14).
_L1_COLUMNS = COLUMNS
_SCHEMA_COLUMNS = ("ts_recv", "bid_px_00", "ask_px_00", "bid_sz_00", "ask_sz_00")


def read_l1(path: Path, instrument: str | None = None) -> L1Data:
    """Read one instrument's best bid and ask from an output of l3tol1: an L1 CSV or Parquet
    dataset, or a schema's (mbp-1, mbp-10, tbbo, bbo-*; its level 00). With an ``instrument``
    column, the rows of ``instrument`` (default: the first row's); rows missing a side are
    left out.

    :raises PlotError: for a missing file or column, or a row that does not parse.
    """
    with contextlib.ExitStack() as closing:
        if path.is_dir() or path.suffix == ".parquet":
            rows, header = _parquet_rows(path)
        else:
            rows, header = _csv_rows(path, closing)
        return _rows_of(path, rows, header, instrument)


def _rows_of(path: Path, rows: Any, header: list[str], instrument: str | None) -> L1Data:
    data = L1Data()
    columns = _L1_COLUMNS if "time" in header else _SCHEMA_COLUMNS
    missing = [c for c in columns if c not in header]
    if missing:
        raise PlotError(f"{path} has no column {', '.join(missing)} (is it an output of l3tol1?)")
    at = [header.index(c) for c in columns]
    name_at = header.index("instrument") if "instrument" in header else None
    if instrument is not None and name_at is None:
        raise PlotError(f"{path} has no instrument column: leave --instrument out")
    for line, row in rows:
        try:
            if name_at is not None:
                if instrument is None:
                    instrument = row[name_at]
                if row[name_at] != instrument:
                    continue
            time, bid, ask, bid_size, ask_size = (row[i] for i in at)
            if bid in ("", None) or ask in ("", None):
                continue  # a one-sided book: no spread to draw
            data.times.append(_seconds(time))
            data.bid.append(float(bid))
            data.ask.append(float(ask))
            data.bid_size.append(int(bid_size))
            data.ask_size.append(int(ask_size))
        except (ValueError, IndexError, TypeError) as exc:
            raise PlotError(f"{path}, line {line}: {exc}") from None
    if not data.times:
        which = f" of instrument {instrument}" if instrument is not None else ""
        raise PlotError(f"{path} has no L1 rows (two-sided){which}")
    data.instrument = instrument
    return data


def _seconds(time: Any) -> float:
    if isinstance(time, datetime):
        return time.timestamp()
    if isinstance(time, str) and not time.isdigit():
        return parse_time(time)
    return int(time) / 1e9  # a schema's ts_recv in ns


def _csv_rows(path: Path, closing: contextlib.ExitStack) -> tuple[Any, list[str]]:
    """The rows of a CSV file (read as they are drawn; the file closes with ``closing``)."""
    try:
        f = closing.enter_context(open(path, newline="", encoding="utf-8-sig"))  # noqa: SIM115
    except OSError as exc:
        raise PlotError(f"cannot read {path}: {exc.strerror or exc}") from None
    reader = csv.reader(f)
    try:
        header = next(reader, None)
    except UnicodeDecodeError as exc:
        raise PlotError(f"{path} is not UTF-8 text: {exc}") from None
    if header is None:
        raise PlotError(f"{path} is empty (no header)")

    def rows() -> Any:
        try:
            for row in reader:
                yield reader.line_num, row
        except UnicodeDecodeError as exc:
            raise PlotError(f"{path} is not UTF-8 text: {exc}") from None

    return rows(), header


def _parquet_rows(path: Path) -> tuple[Any, list[str]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise PlotError(f"cannot read {path}: {exc}") from None
    header = table.schema.names
    columns = [table.column(name).to_pylist() for name in header]
    return ((i + 1, row) for i, row in enumerate(zip(*columns, strict=True))), header


def downsample(
    times: Sequence[float], series: Sequence[Sequence[float]], max_points: int
) -> list[int]:
    """The indices of the rows to plot: all of them if there are at most ``max_points``.

    Otherwise the time range is cut into equal buckets, and from each bucket the rows holding the
    minimum and the maximum of every series are kept, and the bucket's last row; the first and the
    last row are always kept. So spikes stay visible, each step line leaves a bucket at its real
    value, and at most ``max_points`` indices come back (in increasing order), whatever the input.

    :raises ValueError: when ``max_points`` is too small to hold one bucket (``2*len(series)+3``).
    """
    n = len(times)
    per_bucket = 2 * len(series) + 1
    if max_points < per_bucket + 2:
        raise ValueError(f"max_points must be at least {per_bucket + 2} for {len(series)} series")
    if any(len(s) != n for s in series):
        raise ValueError("every series must have one value per time")
    if n <= max_points:
        return list(range(n))
    n_buckets = (max_points - 2) // per_bucket
    start, end = min(times), max(times)
    scale = n_buckets / (end - start) if end > start else 0.0
    buckets: dict[int, list[int]] = {}
    for i, t in enumerate(times):
        b = min(int((t - start) * scale), n_buckets - 1)
        members = buckets.get(b)
        if members is None:
            buckets[b] = [i]
        else:
            members.append(i)
    keep = {0, n - 1}
    for members in buckets.values():
        keep.add(members[-1])
        for values in series:
            keep.add(min(members, key=values.__getitem__))
            keep.add(max(members, key=values.__getitem__))
    return sorted(keep)


def build_figure(data: L1Data, *, max_points: int, title: str) -> tuple[Any, dict[str, int]]:
    """The chart (a matplotlib Figure, not attached to pyplot) and how many points each panel has.

    Imports matplotlib: call it only once it is known to be installed.
    """
    import matplotlib.dates as mdates
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter

    spread = [a - b for a, b in zip(data.ask, data.bid, strict=True)]
    price_rows = downsample(data.times, [data.bid, data.ask, spread], max_points)
    size_rows = downsample(data.times, [data.bid_size, data.ask_size], max_points)

    def at(values: Sequence[Any], rows: list[int]) -> list[Any]:
        return [values[i] for i in rows]

    def when(rows: list[int]) -> list[datetime]:
        return [datetime.fromtimestamp(data.times[i], UTC) for i in rows]

    fig = Figure(figsize=(13, 7.5), dpi=120, layout="constrained")
    prices, sizes = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1.4))

    x = when(price_rows)
    bid, ask = at(data.bid, price_rows), at(data.ask, price_rows)
    prices.step(x, bid, where="post", color=BID_COLOUR, lw=0.9, label="bid", zorder=2)
    prices.step(x, ask, where="post", color=ASK_COLOUR, lw=0.9, label="ask", zorder=2)
    prices.fill_between(
        x, bid, ask, step="post", color=SPREAD_COLOUR, alpha=0.4, lw=0, label="spread", zorder=1
    )
    # A crossed or locked book has no spread to shade: mark it. The spread is a downsampled
    # series, so every bucket holding such a row keeps one (its minimum spread is <= 0).
    crossed = [i for i, (b, a) in enumerate(zip(bid, ask, strict=True)) if b >= a]
    if crossed:
        prices.scatter(
            at(x, crossed),
            at(bid, crossed),
            s=36,
            marker="o",
            color=CROSSED_COLOUR,
            edgecolors="black",
            linewidths=0.6,
            label="crossed or locked\nbook (bid ≥ ask)",
            zorder=3,
        )
    prices.set_ylabel("price")
    prices.grid(True, color="#d0d7de", lw=0.5)
    # Legends outside the axes, on the right: they never hide data.
    prices.legend(loc="upper left", bbox_to_anchor=(1.005, 1), frameon=False, fontsize="small")

    xs = when(size_rows)
    sizes.step(
        xs, at(data.ask_size, size_rows), where="post", color=ASK_COLOUR, lw=0.8, label="ask size"
    )
    sizes.step(
        xs, at(data.bid_size, size_rows), where="post", color=BID_COLOUR, lw=0.8, label="bid size"
    )
    sizes.set_yscale("log")
    sizes.yaxis.set_major_formatter(EngFormatter(sep=""))
    sizes.set_ylabel("size at best (log)")
    sizes.grid(True, color="#d0d7de", lw=0.5)
    handles, labels = sizes.get_legend_handles_labels()  # bid drawn last (on top), listed first
    sizes.legend(
        handles[::-1],
        labels[::-1],
        loc="upper left",
        bbox_to_anchor=(1.005, 1),
        frameon=False,
        fontsize="small",
    )

    locator = mdates.AutoDateLocator(tz=UTC)
    sizes.xaxis.set_major_locator(locator)
    sizes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
    sizes.set_xlabel("time (UTC)")
    sizes.set_xlim(x[0], x[-1])

    first = datetime.fromtimestamp(min(data.times), UTC)
    last = datetime.fromtimestamp(max(data.times), UTC)
    note = f"{first:%Y-%m-%d %H:%M:%S} to {last:%Y-%m-%d %H:%M:%S} UTC, {len(data):,} L1 rows"
    if len(price_rows) < len(data) or len(size_rows) < len(data):
        note += f"; downsampled to at most {max_points:,} points per panel (bucket min, max, last)"
    fig.suptitle(title, fontsize="x-large", fontweight="bold")
    prices.set_title(note, fontsize="small", color="#57606a")
    return fig, {"rows": len(data), "price_points": len(price_rows), "size_points": len(size_rows)}


def _at_least(minimum: int) -> Any:
    def convert(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise ValueError(text)
        return value

    convert.__name__ = f"integer >= {minimum}"
    return convert


def build_parser(prog: str = "l3tol1-plot") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Chart an output of l3tol1 (L1 or a schema's, CSV or Parquet): one"
        " instrument's bid and ask with the spread shaded, and their sizes.",
    )
    p.add_argument(
        "input", type=Path, metavar="OUTPUT", help="a CSV file or Parquet dataset of l3tol1's"
    )
    p.add_argument(
        "--instrument",
        default=None,
        metavar="NAME",
        help="the instrument to draw, when the output has several (default: the first row's)",
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("bbo.png"),
        metavar="PATH",
        help="image to write; its suffix picks the format (default bbo.png)",
    )
    p.add_argument(
        "--max-points",
        type=_at_least(16),
        default=5000,
        metavar="INT",
        help="most points per panel; more rows are downsampled by time (default 5000)",
    )
    p.add_argument("--title", default=None, help="chart title (default: from the file name)")
    return p


def main(argv: Sequence[str] | None = None, *, prog: str = "l3tol1-plot") -> int:
    """Run l3tol1-plot (or `l3tol1 plot`); return the exit status."""
    try:
        args = build_parser(prog).parse_args(argv)  # bad usage: argparse says it
    except SystemExit as exc:  # 2 for bad usage, 0 for --help
        return int(exc.code or 0)
    try:
        import matplotlib
    except ImportError:
        print(NEEDS_MATPLOTLIB, file=sys.stderr)
        return 2
    matplotlib.use("Agg")  # files only, never a window

    try:
        data = read_l1(args.input, args.instrument)
    except PlotError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    name = args.input.name if data.instrument is None else f"{data.instrument}, {args.input.name}"
    title = args.title or f"Best bid and ask: {name}"
    fig, counts = build_figure(data, max_points=args.max_points, title=title)
    try:
        fig.savefig(args.output)
    except (OSError, ValueError) as exc:
        print(f"{prog}: error: cannot write {args.output}: {exc}", file=sys.stderr)
        return 1
    print(
        f"wrote {args.output}: {counts['rows']} rows, {counts['price_points']} price points and "
        f"{counts['size_points']} size points plotted (max {args.max_points})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
