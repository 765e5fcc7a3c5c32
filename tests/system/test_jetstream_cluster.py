"""Scale-out on NATS JetStream (SPEC §13) on a real 3-node cluster: R3 streams, and a server
killed (kill -9) and restarted mid-stream, as well as a worker and the publisher.

A fixture starts three nats-server processes forming one cluster on free loopback ports; every
role gets the three URLs. The roles create their streams with three replicas when the server
they reach reports a cluster. Waits are for observable progress (a log line, a file's contents,
a server's health), never for a guessed time.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, wait_for
from tests.system.jetstream import (
    by_instrument,
    events_of,
    file_job,
    following,
    growing_feed,
    logged,
    needs_nats_server,
    published_seqs,
    reference_through_two_workers,
    role,
    rows_in,
    seen_stderr,
    server_binary,
    stop,
)

pytestmark = needs_nats_server

CONFIG = """server_name: {name}
listen: 127.0.0.1:{port}
http: 127.0.0.1:{http}
jetstream {{ store_dir: "{store}" }}
cluster {{
  name: l3tol1
  listen: 127.0.0.1:{route}
  routes: [ {routes} ]
}}
"""


class ClusterNode:
    """One server of the cluster: its ports and store stay the same across restarts."""

    def __init__(self, name: str, base: Path, routes: str, route: int) -> None:
        self.name = name
        self.port, self.http = free_port(), free_port()
        self.store = base / name
        self.config = base / f"{name}.conf"
        self.config.write_text(
            CONFIG.format(name=name, port=self.port, http=self.http, store=self.store,
                          route=route, routes=routes)
        )  # fmt: skip
        self.log = base / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = server_binary()
        with open(self.log, "ab") as log:  # the child keeps its copy
            self.proc = subprocess.Popen([binary, "-c", str(self.config)], stdout=log, stderr=log)

    def kill(self) -> None:
        """kill -9: no goodbye to the cluster, nothing flushed."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def monitor(self, path: str) -> Any:
        """A monitoring endpoint's JSON answer, or None while the server does not answer."""
        url = f"http://127.0.0.1:{self.http}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return json.loads(response.read())
        except (OSError, ValueError) as exc:
            body = getattr(exc, "read", None)  # an HTTP error status still has its JSON body
            if body is not None:
                try:
                    return json.loads(body())
                except ValueError:
                    return None
            return None

    def healthy(self) -> bool:
        """Up, in the cluster, and its JetStream current (meta leader known, assets caught up)."""
        answer = self.monitor("/healthz")
        return isinstance(answer, dict) and answer.get("status") == "ok"

    def answers(self) -> bool:
        """Whether a client of this server gets an answer from the JetStream API (there is a
        meta leader, and it is reachable)."""

        async def ask() -> bool:
            import nats

            nc = await nats.connect(self.url, allow_reconnect=False, connect_timeout=2)
            try:
                reply = await nc.request("$JS.API.INFO", b"", timeout=1)
                return "error" not in json.loads(reply.data)
            except Exception:  # no answer yet (no meta leader): not usable yet
                return False
            finally:
                await nc.close()

        return asyncio.run(ask())


class ClusterServer:
    """Three JetStream servers in one cluster on loopback ports. ``url`` lists all three, so
    `role` gives a role the whole cluster."""

    def __init__(self, base: Path) -> None:
        base.mkdir(parents=True, exist_ok=True)
        routes = [free_port() for _ in range(3)]
        listed = ", ".join(f"nats-route://127.0.0.1:{r}" for r in routes)
        self.nodes = [ClusterNode(f"n{i + 1}", base, listed, r) for i, r in enumerate(routes)]

    @property
    def url(self) -> str:
        return ",".join(node.url for node in self.nodes)

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        wait_for(lambda: all(node.healthy() for node in self.nodes), 60, "the cluster")
        wait_for(lambda: all(node.answers() for node in self.nodes), 60, "the JetStream API")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def streams(self) -> dict[str, dict[str, Any]]:
        """The streams as the servers that answer report them: config, cluster (leader), and
        consumers (``consumers``: each server reports those it hosts)."""
        found: dict[str, dict[str, Any]] = {}
        for node in self.nodes:
            jsz = node.monitor("/jsz?streams=true&consumers=true&config=true")
            for account in (jsz or {}).get("account_details") or []:
                for stream in account.get("stream_detail") or []:
                    known = found.setdefault(stream["name"], {**stream, "consumers": {}})
                    for consumer in stream.get("consumer_detail") or []:
                        known["consumers"][consumer["name"]] = consumer
        return found

    def node(self, name: str) -> ClusterNode:
        (found,) = (node for node in self.nodes if node.name == name)
        return found


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ClusterServer]:
    servers = ClusterServer(tmp_path / "cluster")
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


L3_STREAM, L1_STREAM = "l3tol1-default-l3", "l3tol1-default-l1"


def replicated(cluster: ClusterServer) -> bool:
    """Whether the feed's streams exist and every stream of the cluster has three replicas."""
    streams = cluster.streams()
    found = {name: s["config"]["num_replicas"] for name, s in streams.items()}
    return {L3_STREAM, L1_STREAM} <= set(found) and set(found.values()) == {3}


def placement(streams: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Where each stream and consumer has its leader (shown when a test fails)."""
    found = {}
    for name, stream in streams.items():
        found[name] = stream.get("cluster", {}).get("leader", "?")
        for consumer in stream["consumers"].values():
            found[f"{name}/{consumer['name']}"] = consumer.get("cluster", {}).get("leader", "?")
    return found


def running(*procs: subprocess.Popen[str]) -> bool:
    """True; or fail at once, with its log, when a role that should run has ended."""
    for proc in procs:
        if proc.poll() is not None:
            logged(proc, "-")  # what it wrote before it ended
            raise AssertionError(f"a role ended ({proc.returncode}): {seen_stderr.get(proc.pid)}")
    return True


def last_event(proc: subprocess.Popen[str], event: str) -> dict[str, Any]:
    """The fields of the last ``event`` a running role logged ({} before the first)."""
    logged(proc, event)
    found = events_of(seen_stderr.get(proc.pid, ""), event)
    return found[-1] if found else {}


def taken(proc: subprocess.Popen[str]) -> set[int]:
    """The partitions a running worker has taken so far."""
    logged(proc, "partition_taken")
    events = events_of(seen_stderr.get(proc.pid, ""), "partition_taken")
    return {int(str(e["partition"])) for e in events}


class TestCluster:
    def test_reference_through_two_workers_is_the_golden_file(
        self, tmp_path: Path, cluster: ClusterServer
    ) -> None:
        """publish -> 2 workers -> collect on R3 streams writes the golden file byte for byte."""
        reference_through_two_workers(cluster, tmp_path)
        assert replicated(cluster), cluster.streams()

    def test_worker_publisher_and_server_killed_mid_stream(
        self, survived: Callable[[str, int], None], tmp_path: Path, cluster: ClusterServer
    ) -> None:
        """While the feed grows: kill -9 of a worker, of the publisher (restarted: it publishes
        nothing twice), of the stream leader's server (restarted on its store). The output is
        exactly the file job's, per instrument."""
        expected, feeder = growing_feed(tmp_path, 150_000, seed=11, instruments=50)
        total = sum(len(rows) for rows in expected.values())
        src = feeder.src
        out = tmp_path / "l1.csv"
        args = (*following(feeder, tmp_path, partitions=4), "--progress-interval", "0.2")
        publisher = role("publish", cluster, *args)
        workers = [role("work", cluster) for _ in range(2)]
        collector = role("collect", cluster, "-o", out)
        logs: dict[str, tuple[int, str]] = {}  # each role's exit status and stderr

        def killed(name: str, proc: subprocess.Popen[str]) -> None:
            proc.kill()
            _, err = proc.communicate()
            logs[f"{name} {proc.pid}"] = (proc.returncode, seen_stderr.pop(proc.pid, "") + err)

        try:
            feeder.feed(0.2)
            wait_for(lambda: running(publisher, collector, *workers) and rows_in(out) > 0
                     and any([taken(w) for w in workers]), 60, "first rows")  # fmt: skip

            # 1. kill -9 of a worker that owns partitions: the other one takes them all.
            victim, survivor = workers if taken(workers[0]) else workers[::-1]
            killed("killed worker", victim)
            feeder.feed(0.4)
            wait_for(lambda: running(publisher, collector, survivor)
                     and taken(survivor) == {0, 1, 2, 3}, 60, "the takeover")  # fmt: skip

            # 2. kill -9 of the publisher; the new one reads the file from its start again.
            killed("killed publisher", publisher)
            publisher = role("publish", cluster, *args)
            feeder.feed(0.6)
            wait_for(lambda: running(publisher, collector, survivor)
                     and last_event(publisher, "progress").get("events_published", 0) > 0,
                     60, "the new publisher to publish")  # fmt: skip
            assert last_event(publisher, "progress")["events_already_published"] > 0

            # 3. kill -9 of the server leading the L3 stream: the roles go on with the other two.
            # What is fed until then gives at most the file job's rows on it: more rows, and
            # more events published, can only come from what is fed after the kill.
            prefix = tmp_path / "prefix.csv"
            shutil.copyfile(src, prefix)
            events_before = len(prefix.read_bytes().splitlines()) - 1
            file_job(prefix, tmp_path / "prefix-l1.csv")
            rows_before = rows_in(tmp_path / "prefix-l1.csv")
            assert replicated(cluster), cluster.streams()
            streams = cluster.streams()
            node = cluster.node(streams[L3_STREAM]["cluster"]["leader"])
            print(f"kill -9 {node.name}; leaders:", placement(streams))
            node.kill()
            feeder.feed(0.8)

            def handled() -> int:  # events the publisher has published or found published
                progress = last_event(publisher, "progress")
                return int(progress["events_published"] + progress["events_already_published"])

            wait_for(lambda: running(publisher, collector, survivor)
                     and handled() > events_before, 60,
                     f"events published without {node.name}")  # fmt: skip
            wait_for(lambda: running(publisher, collector, survivor)
                     and rows_in(out) > rows_before, 60, f"rows without {node.name}")  # fmt: skip
            node.start()
            wait_for(lambda: running(publisher, collector, survivor) and node.healthy(), 60,
                     f"the restarted {node.name} to catch up")  # fmt: skip

            feeder.feed(1.0)
            wait_for(lambda: running(publisher, collector, survivor) and rows_in(out) >= total,
                     120, "every row")  # fmt: skip
        finally:
            for name, proc in (("publisher", publisher), ("collector", collector),
                               *(("worker", w) for w in workers)):  # fmt: skip
                if not any(key.endswith(f" {proc.pid}") for key in logs):
                    logs[f"{name} {proc.pid}"] = stop(proc)  # or its status, if it ended
            for name, (code, log) in logs.items():  # shown when the test fails
                print(f"--- {name} (exit {code})\n{log[-6000:]}")
        assert all(code == 0 for name, (code, _) in logs.items() if "killed" not in name)
        assert by_instrument(out.read_bytes()) == expected
        # The L3 stream holds every event of the file once: none lost, none published twice.
        seqs = published_seqs(cluster.url)
        lines = (tmp_path / "full.csv").read_text().splitlines()[1:]
        assert sorted(seqs) == sorted(int(line.split(",")[1]) for line in lines)
        assert replicated(cluster), cluster.streams()
        survived("JetStream cluster: a worker, the publisher, the L3 stream's leader node", 3)
