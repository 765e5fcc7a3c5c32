"""Output schemas through the JetStream roles (SPEC §13, §14): publish -> work -> collect writes,
per instrument, exactly the file job's rows of the feed's schema; the schema is fixed with the
feed, and a role given another one is refused.

The collected file is in the order the partitions' commits reach the stream: per instrument the
file job's order (checked here), across partitions not (with one partition it is the file job's
file, byte for byte: checked for mbp-1). Real nats-server, roles as CLI subprocesses, as in
test_jetstream.py.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from bench import generate

from tests.conftest import cli, wait_for
from tests.system.jetstream import (
    Feeder,
    NatsServer,
    by_instrument,
    events_of,
    finish,
    following,
    needs_nats_server,
    role,
    rows_in,
    stop,
)
from tests.system.kills import kill_9

pytestmark = needs_nats_server

DROPPED_EVERY = 211  # data lines left out of the generated feeds: gaps, and flag 4
STRETCH = 8  # the generated times, spread this much wider: a short feed spans many seconds


def gapped_feed(path: Path, count: int, *, seed: int, instruments: int) -> Path:
    """A generated feed of several instruments (each with a clock of its own, so the feed's
    time jumps and goes back), a disorder window, times over several seconds, and rows left
    out: gaps (none in its last 500 rows, so that a followed feed's last gap is declared
    without its end)."""
    full = path.with_suffix(".gen.csv")
    generate.generate(full, count, seed=seed, window=20, instruments=instruments)
    lines = full.read_text().splitlines(keepends=True)
    start = datetime(2021, 8, 3, 1, 0, 1, tzinfo=UTC)
    end = len(lines) - 500
    kept = [lines[0]]
    for i, line in enumerate(lines[1:], start=1):
        if i % DROPPED_EVERY == 0 and i <= end:
            continue
        head, _, time = line.rstrip("\n").rpartition(",")
        when = datetime.fromisoformat(time.removesuffix(" UTC")).replace(tzinfo=UTC)
        when = start + (when - start) * STRETCH
        kept.append(f"{head},{when:%Y-%m-%d %H:%M:%S.%f} UTC\n")
    path.write_text("".join(kept))
    return path


def file_job(src: Path, out: Path, *args: str) -> bytes:
    result = cli("-i", src, "-o", out, "--no-follow", "--log-format", "json", *args)
    assert result.returncode == 0, result.stderr
    return out.read_bytes() if out.is_file() else b""


def through_roles(
    server: NatsServer, tmp_path: Path, src: Path, out: Path, *, schema: str, partitions: int,
    workers: int = 2, publish: tuple[str, ...] = (),
) -> None:  # fmt: skip
    """publish --schema -> workers -> collect --no-follow (of the feed's schema)."""
    running = [role("work", server) for _ in range(workers)]
    try:
        code, err = finish(role("publish", server, "-i", src, "--no-follow", "--schema", schema,
                                "--partitions", str(partitions), "--reject-file",
                                tmp_path / "r.jsonl", *publish))  # fmt: skip
        assert code == 0, err
        code, err = finish(role("collect", server, "-o", out, "--no-follow"))
        assert code == 0, err
    finally:
        for worker in running:
            code, log = stop(worker)
            assert code == 0, log[-3000:]


def flags_seen(rows: dict[str, list[list[str]]], header: list[str]) -> int:
    column = header.index("flags")
    seen = 0
    for found in rows.values():
        for row in found:
            seen |= int(row[column])
    return seen


class TestSchemas:
    @pytest.mark.parametrize(
        ("schema", "instruments", "partitions"),
        [("mbp-1", 6, 3), ("mbp-10", 6, 3), ("tbbo", 6, 3), ("bbo-1s", 6, 3), ("mbp-1", 1, 3)],
    )
    def test_each_instrument_gets_the_file_jobs_rows(
        self, tmp_path: Path, nats_server: NatsServer, schema: str, instruments: int,
        partitions: int,
    ) -> None:  # fmt: skip
        """A feed with gaps, several instruments and times over several seconds: per
        instrument the file job's rows, flags included (gaps declared on the way: flag 4 in
        every partition); one instrument: the file job's file."""
        src = gapped_feed(tmp_path / "l3.csv", 12_000, seed=31, instruments=instruments)
        options = ("--max-pending", "50")  # gaps declared as the feed goes, not at its end
        expected = file_job(src, tmp_path / "file-job.csv", "--schema", schema, *options)
        out = tmp_path / "collected.csv"
        through_roles(nats_server, tmp_path, src, out, schema=schema, partitions=partitions,
                      publish=options)  # fmt: skip
        got = out.read_bytes()
        assert got.splitlines()[0] == expected.splitlines()[0]
        if instruments == 1:
            assert got == expected
            return
        rows = by_instrument(expected)
        assert by_instrument(got) == rows
        assert len(rows) == instruments
        assert flags_seen(rows, expected.decode().splitlines()[0].split(",")) & 4  # gaps
        if schema == "bbo-1s":  # intervals of every instrument, over several seconds
            assert len({row[0] for found in rows.values() for row in found}) > 3
        else:
            assert sum(map(len, rows.values())) > 100

    def test_parquet_of_a_sampled_schema(self, tmp_path: Path, nats_server: NatsServer) -> None:
        """``collect`` writes the feed's schema as Parquet: the file job's values per
        instrument (bbo-1m: the clock's marks over minutes)."""
        import pyarrow.dataset as ds

        src = gapped_feed(tmp_path / "l3.csv", 12_000, seed=5, instruments=5)
        options = ("--max-pending", "50")
        file_job(src, tmp_path / "file-job.parquet", "--schema", "bbo-1m", *options)
        out = tmp_path / "collected.parquet"
        through_roles(nats_server, tmp_path, src, out, schema="bbo-1m", partitions=2,
                      workers=1, publish=options)  # fmt: skip

        def rows(path: Path) -> dict[str, list[dict[str, Any]]]:
            found: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for row in ds.dataset(path, format="parquet").to_table().to_pylist():
                found[row["instrument"]].append(row)
            return dict(found)

        expected = rows(tmp_path / "file-job.parquet")
        assert len(expected) == 5
        assert rows(out) == expected

    def test_databento_mbo(self, tmp_path: Path, nats_server: NatsServer) -> None:
        """A DBN feed over two days (two publishers, a symbol renamed on the second day) as
        bbo-1s: sampled rows named by their day's symbol, as the file job names them."""
        from bench.generate_mbo import records

        from tests.mbo import write_dbn

        recs = list(records(20_000, seed=7, publishers=(1, 2), bad_every=500))
        src = write_dbn(tmp_path / "feed.dbn.zst", recs, zstd=True)
        expected = by_instrument(file_job(src, tmp_path / "file-job.csv", "--schema", "bbo-1s"))
        assert {"OLDSYM", "NEWSYM", "ESH4@2"} <= set(expected)
        out = tmp_path / "collected.csv"
        through_roles(nats_server, tmp_path, src, out, schema="bbo-1s", partitions=4)
        assert by_instrument(out.read_bytes()) == expected


class TestTheFeedsSchema:
    def test_other_schemas_are_refused_naming_both(
        self, tmp_path: Path, nats_server: NatsServer
    ) -> None:
        """The first publisher fixes the feed's schema: a publisher, a worker or a collector
        given another is refused (exit 2, one line naming both); without --schema, worker
        and collector take the feed's."""
        src = gapped_feed(tmp_path / "l3.csv", 2_000, seed=3, instruments=2)
        args = ("-i", src, "--no-follow", "--partitions", "2", "--reject-file",
                tmp_path / "r.jsonl")  # fmt: skip
        code, err = finish(role("publish", nats_server, *args, "--schema", "tbbo"))
        assert code == 0, err
        for given, name in (("mbp-1", "publish"), ("l1", "publish"), ("mbp-10", "work"),
                            ("bbo-1s", "collect")):  # fmt: skip
            extra = args if name == "publish" else ("-o", tmp_path / "x.csv", "--no-follow")
            if name == "work":
                extra = ()
            code, err = finish(role(name, nats_server, *extra, "--schema", given), timeout=60)
            assert code == 2, err
            last = err.strip().splitlines()[-1]
            assert "schema tbbo" in last and f"--schema {given}" in last, last
        code, err = finish(role("publish", nats_server, *args))  # no --schema: l1
        assert code == 2 and "--schema l1" in err, err

    def test_a_collect_checkpoint_records_its_schema(
        self, tmp_path: Path, nats_server: NatsServer
    ) -> None:
        """``collect --checkpoint`` records the schema it wrote; the checkpoint is refused for a
        feed of another schema (exit 2, naming both)."""
        import json

        src = gapped_feed(tmp_path / "l3.csv", 2_000, seed=3, instruments=2)
        ckpt, out = tmp_path / "collect.ckpt", tmp_path / "out.csv"
        worker = role("work", nats_server, "--feed", "a")
        try:
            code, err = finish(role("publish", nats_server, "-i", src, "--no-follow", "--feed",
                                    "a", "--schema", "tbbo", "--reject-file",
                                    tmp_path / "r.jsonl"))  # fmt: skip
            assert code == 0, err
            code, err = finish(role("collect", nats_server, "--feed", "a", "-o", out,
                                    "--checkpoint", ckpt, "--no-follow"))  # fmt: skip
            assert code == 0, err
        finally:
            stop(worker)
        assert json.loads(ckpt.read_bytes())["schema"] == "tbbo"
        assert out.read_bytes().startswith(b"ts_recv,ts_event,instrument,action,")
        code, err = finish(role("publish", nats_server, "-i", src, "--no-follow", "--feed",
                                "b", "--schema", "mbp-1", "--reject-file",
                                tmp_path / "r2.jsonl"))  # fmt: skip
        assert code == 0, err
        code, err = finish(role("collect", nats_server, "--feed", "b", "-o", out, "--checkpoint",
                                ckpt, "--no-follow"))  # fmt: skip
        last = err.strip().splitlines()[-1]
        assert code == 2 and "schema tbbo" in last and "schema mbp-1" in last, err

    def test_a_feed_made_before_schemas_is_l1(
        self, tmp_path: Path, nats_server: NatsServer
    ) -> None:
        """A feed whose stream has no schema in its metadata (made by an earlier version)
        is an l1 feed: an l1 publisher goes on with it, another schema is refused."""
        import asyncio

        async def old_feed() -> None:
            import nats
            from nats.js.api import StreamConfig

            nc = await nats.connect(nats_server.url)
            await nc.jetstream().add_stream(StreamConfig(
                name="l3tol1-default-l3", subjects=["l3tol1.l3.default.*"],
                metadata={"l3tol1_partitions": "2"}, allow_direct=True))  # fmt: skip
            await nc.close()

        asyncio.run(old_feed())
        src = gapped_feed(tmp_path / "l3.csv", 500, seed=3, instruments=2)
        args = ("-i", src, "--no-follow", "--partitions", "2", "--reject-file",
                tmp_path / "r.jsonl")  # fmt: skip
        code, err = finish(role("publish", nats_server, *args, "--schema", "mbp-1"))
        assert code == 2 and "has schema l1" in err, err
        code, err = finish(role("publish", nats_server, *args))
        assert code == 0, err


class TestKills:
    def test_worker_killed_again_and_again_mbp_1(
        self, survived: Callable[[str, int], None], tmp_path: Path, nats_server: NatsServer
    ) -> None:
        """mbp-1 while the feed grows: the worker owning every partition is killed (kill -9)
        at a random instant after rows came, three times, a new one started each time (the
        first ones never save their books: a successor replays and drops what was
        published). Per instrument, exactly the file job's rows."""
        full = gapped_feed(tmp_path / "full.csv", 60_000, seed=13, instruments=12)
        # Gaps are declared when 50 events wait (not by time): the same in both runs.
        gaps = ("--max-pending", "50", "--start-seq", str(generate.SEQ_BASE))
        expected = by_instrument(file_job(full, tmp_path / "file-job.csv", "--schema", "mbp-1",
                                          *gaps))  # fmt: skip
        feeder = Feeder(full, tmp_path / "l3.csv")
        out = tmp_path / "collected.csv"
        publisher = role("publish", nats_server, *following(feeder, tmp_path, partitions=4),
                         "--schema", "mbp-1", "--max-pending", "50")  # fmt: skip
        collector = role("collect", nats_server, "-o", out)
        rng = random.Random(19)
        worker = None
        kills = 0
        try:
            for upto in (0.25, 0.5, 0.75):
                worker = role("work", nats_server, "--checkpoint-interval",
                              rng.choice(["3600", "0.2"]))  # fmt: skip
                before = rows_in(out)
                feeder.feed(upto)
                wait_for(lambda b=before: rows_in(out) > b, 60, "rows from this worker")
                feeder.feed(upto + rng.uniform(0.02, 0.2))  # killed while it works on these
                kill_9(worker)
                kills += 1
            worker = role("work", nats_server)
            feeder.feed(1.0)
            total = sum(len(rows) for rows in expected.values())
            wait_for(lambda: rows_in(out) >= total, 120, "every row")
        finally:
            for name, proc in (("publisher", publisher), ("collector", collector)):
                print(name, stop(proc)[1][-3000:])  # shown when the test fails
            log = stop(worker)[1] if worker is not None and worker.poll() is None else ""
            print("last worker", log[-3000:])
        assert events_of(log, "partition_taken")
        assert by_instrument(out.read_bytes()) == expected
        survived("JetStream mbp-1: the worker owning every partition", kills)

    def test_publisher_killed_sends_each_mark_once(
        self, survived: Callable[[str, int], None], tmp_path: Path, nats_server: NatsServer
    ) -> None:
        """bbo-1s (gap and clock marks in every partition) while the feed grows: the publisher
        is killed (kill -9) after rows came, then one reads the whole file again to its end:
        neither a mark nor an event is lost or repeated; per instrument, the file job's rows."""
        full = gapped_feed(tmp_path / "full.csv", 30_000, seed=23, instruments=8)
        gaps = ("--max-pending", "50", "--start-seq", str(generate.SEQ_BASE))
        expected = by_instrument(file_job(full, tmp_path / "file-job.csv", "--schema", "bbo-1s",
                                          *gaps))  # fmt: skip
        feeder = Feeder(full, tmp_path / "l3.csv")
        out = tmp_path / "collected.csv"
        args = (*following(feeder, tmp_path, partitions=3), "--schema", "bbo-1s",
                "--max-pending", "50")  # fmt: skip
        worker = role("work", nats_server)
        collector = None
        try:
            publisher = role("publish", nats_server, *args)
            feeder.feed(0.5)
            collector = role("collect", nats_server, "-o", out, "--no-follow")
            wait_for(lambda: rows_in(out) > 0, 60, "rows")
            kill_9(publisher)
            feeder.feed(1.0)
            again = ("-i", feeder.src, "--no-follow", "--partitions", "3", "--reject-file",
                     tmp_path / "r.jsonl", "--schema", "bbo-1s", *gaps)  # fmt: skip
            code, err = finish(role("publish", nats_server, *again))
            assert code == 0, err
            summary = events_of(err, "summary")[-1]
            assert summary["events_already_published"] > 0, summary
            code, err = finish(collector)
            assert code == 0, err
        finally:
            print("worker", stop(worker)[1][-3000:])
        assert by_instrument(out.read_bytes()) == expected
        survived("JetStream bbo-1s: a publisher without checkpoint", 1)
