"""Databento MBO inputs for tests (SPEC §12): records written by hand, random streams of them
(hypothesis), and the files they make: DBN (plain or zstd) and Databento's own CSV export."""

from __future__ import annotations

import io
from pathlib import Path

import databento_dbn as dbn
import zstandard
from bench.generate_mbo import UNDEF_PRICE, Mbo, metadata, pack
from hypothesis import strategies as st

T0 = 1_703_541_600_000_000_000  # 2023-12-25 22:00:00 UTC, the day the metadata starts
DAY = 86_400 * 10**9
LAST = 0x80


def write_dbn(path: Path, recs: list[Mbo], *, zstd: bool = False) -> Path:
    """A DBN file of these records: metadata encoded by databento-dbn, records packed as it
    packs them."""
    data = metadata() + b"".join(pack(r) for r in recs)
    path.write_bytes(zstandard.ZstdCompressor().compress(data) if zstd else data)
    return path


def write_csv_export(path: Path, dbn_file: Path, *, pretty: bool, symbols: bool) -> Path:
    """Databento's own CSV export of a DBN file (the Transcoder the `dbn` CLI is built on)."""
    out = io.BytesIO()
    transcoder = dbn.Transcoder(
        out, dbn.Encoding.CSV, dbn.Compression.NONE,
        pretty_px=pretty, pretty_ts=pretty, map_symbols=symbols,
    )  # fmt: skip
    transcoder.write(dbn_file.read_bytes())
    transcoder.flush()
    path.write_bytes(out.getvalue())
    return path


def mbo(
    seq: int, action: str, order: int, side: str, price: float, size: int,
    *, last: bool = True, publisher: int = 1, instrument: int = 1001, at: int = 0,
) -> Mbo:  # fmt: skip
    """One MBO record, for hand-written scenarios (price in whole units, or UNDEF)."""
    nanos = UNDEF_PRICE if price == UNDEF_PRICE else round(price * 10**9)
    return Mbo(publisher, instrument, order, nanos, size, LAST if last else 0, action, side,
               T0 + 1_000_000 + at * 1000, seq)  # fmt: skip


@st.composite
def streams(draw: st.DrawFn) -> list[Mbo]:
    """Random MBO records over three books (two publishers), with venue events, clears, unknown
    orders, cancels larger than what rests, negative and undefined prices, trades, fills and
    none records with sides B, A and N (N on an add, modify or cancel is a reject), and
    ts_event before, at or after ts_recv (never 0: Databento's pretty CSV export writes a
    ts_event of 0 as an empty field, which the CSV reader refuses as `bad time`)."""
    books = [(1, 1001), (2, 1001), (1, 1003)]
    out = []
    for i in range(draw(st.integers(0, 120))):
        publisher, instrument = books[draw(st.integers(0, 2))]
        action = draw(st.sampled_from("AAAAMMCCCRTFN"))
        side = draw(st.sampled_from("BBBBAAAAN" if action in "AMC" else "BAN"))
        price = draw(st.sampled_from([-1.5, 0, 99.5, 100, 100.25, 101, None]))
        ts_recv = T0 + 10**6 + i * 4_000_000_000_000
        out.append(
            Mbo(
                publisher,
                instrument,
                draw(st.integers(1, 6)),
                UNDEF_PRICE if price is None else int(price * 10**9),
                draw(st.integers(0, 5)),
                LAST if draw(st.integers(0, 3)) else 0,
                action,
                side,
                ts_recv,
                i + 1,
                ts_recv + draw(st.sampled_from([-1000, 0, 7, -(10**9)])),
            )
        )
    return out
