"""The JetStream roles (SPEC §13) against a broker that is away and messages that are not theirs.

Issue 17: a foreign message on a partition's subject must not stop its publisher (item 2) nor
wedge the partition (4); SIGTERM ends a role with exit 0 within seconds while the server is
away, at start or mid-run (7, 8); a second publisher is refused in one line (10); a publisher
keeps its rejects beside its checkpoint and says what it published (13).

Real nats-servers (the `NatsServer` of tests/system/jetstream.py) and the real CLI in
subprocesses; foreign messages are published with a plain nats-py client, as anyone could.
Waits are for observable progress with timeouts generous for a slow machine; the bound on a
stop (`STOPS_WITHIN`) is far below the minute that the roles used to take.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    REFERENCE_INPUT,
    REFERENCE_OUTPUT,
    cli,
    free_port,
    start_cli,
    wait_for,
    wait_listening,
)
from tests.system.jetstream import (
    NatsServer,
    finish,
    logged,
    needs_nats_server,
    role,
    seen_stderr,
    stop,
)

pytestmark = needs_nats_server

STOPS_WITHIN = 20.0  # seconds from SIGTERM to exit (the roles need at most about 6)
L3 = "l3tol1.l3.default"
LINES = REFERENCE_INPUT.read_bytes().splitlines(keepends=True)
FIRST_SEQ = min(int(line.split(b",", 1)[0]) for line in LINES[1:])
LAST_SEQ = max(int(line.split(b",", 1)[0]) for line in LINES[1:])


def publish_all(server: NatsServer, tmp_path: Path, partitions: int) -> str:
    """Publish the reference input (--no-follow: it ends the feed); the publisher's stderr."""
    args = ("-i", REFERENCE_INPUT, "--no-follow", "--partitions", str(partitions))
    code, err = finish(role("publish", server, *args, "--reject-file", tmp_path / "r.jsonl"))
    assert code == 0, err
    return err


def events_of(log: str, name: str) -> list[dict[str, Any]]:
    """The log lines of event ``name`` (not the counters of that name in other lines)."""
    from tests.system.jetstream import events_of as lines_naming

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


def make_streams(url: str, partitions: int) -> None:
    """The feed's streams, as the roles create them (so that messages can come first)."""
    from l3tol1.jetstream.client import JetStream
    from l3tol1.jetstream.wire import Names

    async def create(nc: Any) -> None:
        js = JetStream(nc, Names("l3tol1", "default"))
        await js.ensure_l3_stream(partitions)
        await js.ensure_l1_stream()

    on_server(url, create)


def stored(url: str, stream: str) -> int:
    """How many messages ``stream`` holds (0 before it exists)."""

    async def count(nc: Any) -> int:
        from nats.js.errors import NotFoundError

        try:
            return int((await nc.jetstream().stream_info(stream)).state.messages)
        except NotFoundError:
            return 0

    return int(on_server(url, count))


def events_body(seq: int) -> bytes:
    """A well-formed batch of one event (an ADD of the one-instrument feed)."""
    from l3tol1.core.records import Event
    from l3tol1.core.wire import pack_events

    event = Event(seq, 0, "", "forged", 0, 10**9, 1, "2021-08-03 01:00:00.100000 UTC", 2, "", True)
    ((_, body, *_),), _ = pack_events([event], 1, [-1], 1 << 20)
    return body


def alive(proc: subprocess.Popen[str], event: str) -> Callable[[], bool]:
    """A wait predicate: ``proc`` logged ``event``; it fails at once if ``proc`` has ended."""

    def check() -> bool:
        if logged(proc, event):
            return True
        if proc.poll() is not None:
            _, err = proc.communicate()
            log = seen_stderr.get(proc.pid, "") + err
            raise AssertionError(f"exited {proc.returncode}: {log[-3000:]}")
        return False

    return check


def following(src: Path, tmp_path: Path, partitions: int) -> tuple[str | Path, ...]:
    """A publisher following ``src``, a part of the reference input cut at a line (so a seq
    may come late: no gap is declared lost; the start-up window closes at the first seq)."""
    return ("-i", src, "--follow", "--gap-timeout", "3600", "--start-seq", str(FIRST_SEQ),
            "--partitions", str(partitions), "--reject-file", tmp_path / "r.jsonl")  # fmt: skip


def stopped(procs: dict[str, subprocess.Popen[str]]) -> dict[str, tuple[int, str, float]]:
    """SIGTERM to each role at once; each one's exit status, stderr and seconds to exit."""
    began = time.monotonic()
    for proc in procs.values():
        proc.send_signal(signal.SIGTERM)
    ended = {}
    for name, proc in procs.items():
        try:
            _, err = proc.communicate(timeout=max(0.1, began + STOPS_WITHIN - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            raise AssertionError(
                f"{name} runs {STOPS_WITHIN} s after SIGTERM: {err[-3000:]}"
            ) from None
        ended[name] = (
            proc.returncode,
            seen_stderr.pop(proc.pid, "") + err,
            time.monotonic() - began,
        )
    return ended


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

    def test_forged_headers_never_wedge_a_partition(
        self, tmp_path: Path, nats_server: NatsServer
    ) -> None:
        """Messages that look like l3tol1's but lie: ``L3tol1-Prev`` naming a stream seq that
        holds another subject's message, or one past the message itself, and an end mark
        ``L3tol1-End: banana``. The publisher looks past them, the worker quarantines them (its
        partition goes on), and ``collect --no-follow`` ends with the golden file (item 4)."""
        url = nats_server.url
        make_streams(url, 1)
        head = {"L3tol1-Last-Seq": "5", "L3tol1-Layout": "0,0"}
        seqs = inject(
            url,
            (f"{L3}.7", b"not a partition", None),  # stream seq 1
            (f"{L3}.0", events_body(5), {**head, "L3tol1-Prev": "1"}),
            (f"{L3}.0", b"", {**head, "L3tol1-Prev": "2", "L3tol1-End": "banana"}),
            (f"{L3}.0", events_body(6), {**head, "L3tol1-Prev": "999999"}),
        )
        assert seqs == [1, 2, 3, 4]
        summary = events_of(publish_all(nats_server, tmp_path, 1), "summary")[-1]
        worker = role("work", nats_server)
        out = tmp_path / "l1.csv"
        try:
            code, err = finish(role("collect", nats_server, "-o", out, "--no-follow"), timeout=90)
            assert code == 0, err
        finally:
            code, log = stop(worker)
        assert code == 0, log
        # The one whose L3tol1-Prev names another subject's message is l3tol1's at face value
        # (only the stream can tell the lie, which the worker asks): two are looked past.
        assert (summary["foreign_messages_skipped"], summary["events_published"]) == (2, 34_247)
        assert events_of(log, "summary")[-1]["quarantined"] == 3
        assert events_of(log, "summary")[-1]["delivery_gaps"] == 0
        reasons = [str(e["reason"]) for e in events_of(log, "message_quarantined")]
        assert any("L3tol1-Prev 1 is not a message of" in r for r in reasons), reasons
        assert any("banana" in r for r in reasons), reasons
        assert out.read_bytes() == REFERENCE_OUTPUT.read_bytes()

    def test_only_a_workers_end_marks_end_a_partition(
        self, tmp_path: Path, nats_server: NatsServer
    ) -> None:
        """Foreign L1 messages (end marks on a subject past the partition count and on one
        that is no number, ``L3tol1-End: banana`` on a partition) and junk on a state subject:
        the collector quarantines them and does not end early, the worker looks past them when
        it takes the partition; the output is the golden file (item 4, the collector's part)."""
        url = nats_server.url
        make_streams(url, 2)
        end = {"L3tol1-Layout": "0,0", "L3tol1-Covers": "1", "L3tol1-End": "1"}
        inject(
            url,
            ("l3tol1.l1.default.2", b"", end),
            ("l3tol1.l1.default.x", b"", end),
            ("l3tol1.l1.default.0", b"", {**end, "L3tol1-End": "banana"}),
            ("l3tol1.state.default.0", b"junk", None),
        )
        publish_all(nats_server, tmp_path, 2)
        worker = role("work", nats_server)
        out = tmp_path / "l1.csv"
        try:
            code, err = finish(role("collect", nats_server, "-o", out, "--no-follow"))
            assert code == 0, err
        finally:
            wcode, log = stop(worker)
        assert wcode == 0, log
        assert events_of(err, "summary")[-1]["quarantined"] == 3
        assert int(events_of(log, "summary")[-1]["quarantined"]) >= 2  # type: ignore[call-overload]
        assert out.read_bytes() == REFERENCE_OUTPUT.read_bytes()


class TestPublisher:
    def test_a_second_publisher_is_refused_in_one_line(
        self, tmp_path: Path, nats_server: NatsServer
    ) -> None:
        """A publisher that finds another publisher's messages after its own stops with the
        one-line refusal and exit 2 (a configuration error, not restarted by a unit with
        RestartPreventExitStatus=2), not a traceback (item 10)."""
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


ROLE_ARGS: dict[str, Callable[[Path], tuple[str | Path, ...]]] = {
    "work": lambda tmp: (),
    "collect": lambda tmp: ("-o", tmp / "l1.csv"),
    "publish": lambda tmp: (
        "-i",
        REFERENCE_INPUT,
        "--follow",
        "--partitions",
        "2",
        "--reject-file",
        tmp / "r.jsonl",
    ),
}


class TestServerAway:
    @pytest.mark.parametrize("name", ["work", "collect", "publish"])
    def test_no_server_at_start_is_said_and_waited_for(self, tmp_path: Path, name: str) -> None:
        """With no server to reach, a role says at once and every few seconds which servers it
        tries; it joins the server once there is one, says which, and SIGTERM then stops it
        with exit 0 (item 8)."""
        server = NatsServer(tmp_path / "nats-store")  # not started yet: nothing listens
        other = f"nats://127.0.0.1:{free_port()}"
        proc = start_cli(name, "--nats-url", f"{server.url},{other}", "--log-format", "json",
                         *ROLE_ARGS[name](tmp_path))  # fmt: skip
        try:
            wait_for(alive(proc, "waiting_for_nats"), 30, "waiting_for_nats")
            server.start()
            wait_for(alive(proc, "nats_connected"), 60, "nats_connected")
            (code, err, _) = stopped({name: proc})[name]
        finally:
            server.stop()
        assert code == 0, err
        waiting = events_of(err, "waiting_for_nats")
        assert all(e["servers"] == [server.url, other] for e in waiting), waiting
        (joined,) = events_of(err, "nats_connected")
        assert joined["server"] == server.url, joined

    @pytest.mark.parametrize("url", ["nats://127.0.0.1:abc", "nats://[::1", "nats://none:4222"])
    def test_a_url_that_names_no_server_is_refused_at_once(self, url: str) -> None:
        """A URL nats-py could never connect to is a configuration error (exit 2, one line), not
        a reason to wait (the wait would be forever)."""
        result = cli("work", "--nats-url", f"nats://127.0.0.1:4222,{url}", timeout=30)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [
            "l3tol1: error: argument --nats-url: invalid list of nats:// URLs value:"
            f" 'nats://127.0.0.1:4222,{url}'"
        ]

    def test_sigterm_from_the_first_instant(self, tmp_path: Path) -> None:
        """SIGTERM as soon as each role handles it, while no server answers: each exits 0
        within seconds (it used to be ignored until a server answered) (item 8)."""
        url = f"nats://127.0.0.1:{free_port()}"
        procs = {
            name: start_cli(name, "--nats-url", url, "--log-format", "json", *args(tmp_path))
            for name, args in ROLE_ARGS.items()
        }
        for proc in procs.values():
            wait_listening(proc)
        for name, (code, err, _) in stopped(procs).items():
            assert code == 0, (name, err[-3000:])
            assert "Traceback" not in err, (name, err[-3000:])

    @pytest.mark.parametrize("how", ["killed", "paused"])
    def test_sigterm_while_the_server_is_away_mid_run(self, tmp_path: Path, how: str) -> None:
        """A worker, a collector and a following publisher at work; the server is killed (or
        paused: SIGSTOP); SIGTERM ends each with exit 0 within seconds, no traceback (item 7)."""
        server = NatsServer(tmp_path / "nats-store")
        server.start()
        assert server.proc is not None
        try:
            publish_all(server, tmp_path, 2)
            out = tmp_path / "l1.csv"
            procs = {
                "work": role("work", server),
                "collect": role("collect", server, "-o", out),
                "publish": role("publish", server, *ROLE_ARGS["publish"](tmp_path)),
            }
            wait_for(alive(procs["work"], "partition_taken"), 60, "the worker at work")
            golden = REFERENCE_OUTPUT.read_bytes()
            wait_for(lambda: out.exists() and out.read_bytes() == golden, 60, "every row")
            wait_for(alive(procs["publish"], "end_of_input_reached"), 60, "the publisher")
            if how == "killed":
                server.proc.kill()
            else:
                server.proc.send_signal(signal.SIGSTOP)
            ended = stopped(procs)
        finally:
            server.proc.send_signal(signal.SIGCONT)
            server.stop()
        for name, (code, err, _) in ended.items():
            assert code == 0, (name, err[-3000:])
            assert "Traceback" not in err, (name, err[-3000:])
