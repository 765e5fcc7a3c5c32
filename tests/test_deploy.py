"""The operations files: Dockerfile, docker-compose.yml, the systemd unit and its environment file.

No Docker daemon is needed: the Dockerfile is read by a small parser below, and its ENTRYPOINT is
run here with exactly the image's environment (paths under /data moved to a temporary directory).
The systemd unit is checked by `systemd-analyze verify`.
"""

from __future__ import annotations

import http.server
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
from pathlib import Path

import pytest

from l3tol1.cli import parse_settings
from l3tol1.options import ENV_PREFIX, OPTIONS
from tests.conftest import REFERENCE_INPUT, REFERENCE_OUTPUT, cli_env

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "docker-compose.yml"
UNIT = ROOT / "deploy" / "l3tol1.service"
ENV_FILE = ROOT / "deploy" / "l3tol1.env"
VENV_BIN = Path(sys.executable).parent
METRICS_PORT = "L3TOL1_METRICS_PORT"
# The variables of the options that come with --metrics-port (being added to the CLI).


# --- a small Dockerfile reader ----------------------------------------------------------------


def dockerfile_all() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of every stage in order: continuation lines joined, comments
    dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue  # Docker drops comment lines, also inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, args = line.partition(" ")
        instructions.append((word.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def build_args() -> dict[str, str]:
    """The ARG defaults declared before the first FROM."""
    found: dict[str, str] = {}
    for word, args in dockerfile_all():
        if word == "FROM":
            break
        if word == "ARG":
            name, _, default = args.partition("=")
            found[name] = default
    return found


def stages() -> list[list[tuple[str, str]]]:
    """The instructions of each stage (from its FROM on), ARGs substituted in FROM."""
    out: list[list[tuple[str, str]]] = []
    for word, args in dockerfile_all():
        if word == "FROM":
            for name, value in build_args().items():
                args = args.replace("${" + name + "}", value)
            out.append([])
        if out:
            out[-1].append((word, args))
    return out


def dockerfile() -> list[tuple[str, str]]:
    """The final stage's instructions: the image that runs."""
    return stages()[-1]


def arguments(name: str, stage: list[tuple[str, str]] | None = None) -> list[str]:
    return [args for word, args in (stage or dockerfile()) if word == name]


def exec_form(args: str) -> list[str]:
    """A JSON-array (exec form) argument list; a shell-form one fails the test."""
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        pytest.fail(f"not in exec form (a JSON array): {args}")
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def image_env() -> dict[str, str]:
    """The ENV of the image: `ENV k=v k2="v 2"` pairs and the legacy `ENV k v` form."""
    env: dict[str, str] = {}
    for args in arguments("ENV"):
        words = shlex.split(args)
        if all("=" in w for w in words):
            env.update(w.split("=", 1) for w in words)
        else:
            env[words[0]] = args.split(None, 1)[1]
    assert not any("$" in v for v in env.values()), "substitution in ENV: extend the parser"
    return env


def image_command() -> list[str]:
    """ENTRYPOINT + CMD, both in exec form, as `docker run IMAGE` runs them."""
    (entrypoint,) = arguments("ENTRYPOINT")
    cmd = arguments("CMD")
    return exec_form(entrypoint) + (exec_form(cmd[-1]) if cmd else [])


def healthcheck() -> tuple[dict[str, str], list[str]]:
    """The HEALTHCHECK's options (--interval=... without the dashes) and its command."""
    (args,) = arguments("HEALTHCHECK")
    options, _, command = args.partition("CMD ")
    parsed = dict(o[2:].split("=", 1) for o in options.split())
    return parsed, exec_form(command)


def made_directories() -> list[str]:
    """The directories the image's RUN lines create with `mkdir -p`."""
    made: list[str] = []
    for args in arguments("RUN"):
        for command in re.split(r"&&|;", args):
            words = shlex.split(command)
            if words[:2] == ["mkdir", "-p"]:
                made += words[2:]
    return made


# --- the options the service has ----------------------------------------------------------------


def option_variables() -> set[str]:
    """L3TOL1_<OPTION> for every option of the CLI."""
    return {option.env for option in OPTIONS}


def settings_from(environ: dict[str, str]):
    """The Settings these variables give, as the CLI reads them (raises ConfigError if bad)."""
    return parse_settings([], environ)


# --- Dockerfile ----------------------------------------------------------------------------------


class TestDockerfile:
    def test_image_shape(self) -> None:
        build, _ = stages()
        (base,) = arguments("FROM")
        assert base == "python:3.11-slim-bookworm"
        # The wheel links against the build stage's glibc: both stages on one Debian release.
        assert arguments("FROM", build) == ["python:3.11-bookworm AS build"]
        (user,) = arguments("USER")
        assert user.split(":")[0] not in ("root", "0"), "the service must not run as root"
        assert arguments("STOPSIGNAL") == ["SIGTERM"]
        assert image_command()[0] == "l3tol1"
        copied = " ".join(arguments("COPY", build))
        for needed in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "service/"):
            assert needed in copied
        assert "L3TOL1_REQUIRE_COMPILED=1" in " ".join(arguments("ENV", build))
        assert any("pip wheel" in r for r in arguments("RUN", build))
        # The runtime installs the built wheels only (no index: no compiler, no second build).
        assert any("--no-index --find-links=/tmp/wheels l3tol1" in r for r in arguments("RUN"))
        assert any('import l3tol1.core._compiled"' in r for r in arguments("RUN"))
        volumes = [v for args in arguments("VOLUME") for v in exec_form(args)]
        assert "/data" in volumes

    def test_environment_is_a_valid_configuration(self) -> None:
        env = image_env()
        variables = {k for k in env if k.startswith(ENV_PREFIX)}
        assert variables <= option_variables(), "not an option of l3tol1"
        settings = settings_from(env)
        assert settings.follow is True
        assert settings.log_format == "json"
        assert str(settings.input_file) == "/data/in/l3.csv"
        assert str(settings.output_file) == "/data/out/l1.csv"
        assert str(settings.checkpoint) == "/data/state/l3tol1.ckpt"
        for path in (settings.input_file, settings.output_file, settings.checkpoint):
            assert str(path.parent) in made_directories(), f"the image does not create {path}"
        assert settings.metrics_port == int(env[METRICS_PORT])
        # Inside a container, 127.0.0.1 would not be reachable through a published port.
        assert settings.metrics_host == "0.0.0.0"

    def test_metrics_port_is_exposed_and_health_checked(self) -> None:
        port = image_env()[METRICS_PORT]
        assert port in " ".join(arguments("EXPOSE")).split()
        options, command = healthcheck()
        assert {"interval", "timeout", "start-period", "retries"} <= options.keys()
        assert command[:2] == ["python", "-c"]
        code = command[2]
        assert "urllib.request" in code and "127.0.0.1" in code and "/healthz" in code
        assert f"os.environ['{METRICS_PORT}']" in code

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

    def test_dockerignore(self) -> None:
        ignored = {
            line.strip()
            for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")
        }
        assert {".venv", ".git", "bench/.cache", "out", ".pytest_cache", ".ruff_cache"} <= ignored
        assert not ignored & {"pyproject.toml", "README.md", "service", "service/", "*"}

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- docker-compose.yml --------------------------------------------------------------------------


def compose_text() -> str:
    return COMPOSE.read_text(encoding="utf-8")


def compose_environment() -> dict[str, str]:
    """The L3TOL1_* entries of the service's `environment:` mapping (unquoted)."""
    found = re.findall(r"^ {6}(L3TOL1_[A-Z_]+): *(.*?) *$", compose_text(), flags=re.M)
    return {name: value.strip("\"'") for name, value in found}


class TestCompose:
    def test_is_plain_yaml_with_the_service_settings(self) -> None:
        text = compose_text()
        assert "\t" not in text, "YAML does not allow tabs for indentation"
        assert re.search(r"^services:\n  l3tol1:\n", text, flags=re.M)
        for line in (
            "    build: .",
            "    restart: unless-stopped",
            "    stop_signal: SIGTERM",
            "    stop_grace_period: 10s",
            "    environment:",
            "    healthcheck:",
        ):
            assert f"\n{line}\n" in text, line

    def test_environment_matches_the_image(self) -> None:
        env = compose_environment()
        image = {k: v for k, v in image_env().items() if k.startswith(ENV_PREFIX)}
        assert set(env) <= option_variables(), "not an option of l3tol1"
        assert env == image, "docker-compose.yml and the Dockerfile set different options"
        settings_from(env)  # a valid configuration

    def test_volumes_cover_the_paths(self) -> None:
        env = compose_environment()
        volumes = re.findall(r"^ {6}- (\S+):(/data/\S+?)(:ro)?$", compose_text(), flags=re.M)
        mounted = {target: bool(ro) for _, target, ro in volumes}
        assert mounted.get(str(Path(env["L3TOL1_INPUT_FILE"]).parent)) is True, "input, read-only"
        assert mounted.get(str(Path(env["L3TOL1_OUTPUT_FILE"]).parent)) is False
        assert mounted.get(str(Path(env["L3TOL1_CHECKPOINT"]).parent)) is False

    def test_port_and_healthcheck_are_the_image_ones(self) -> None:
        text = compose_text()
        port = image_env()[METRICS_PORT]
        assert re.search(rf'^ {{6}}- "(?:[\d.]+:)?\d+:{port}"$', text, flags=re.M)
        (test,) = re.findall(r"^ {6}test: (\[.*\])$", text, flags=re.M)
        _, command = healthcheck()
        assert json.loads(test) == ["CMD", *command]


# --- systemd ---------------------------------------------------------------------------------


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def env_file() -> tuple[dict[str, str], set[str]]:
    """The variables the environment file sets, and every L3TOL1_ name it mentions."""
    text = ENV_FILE.read_text(encoding="utf-8")
    active = dict(re.findall(r"^(L3TOL1_[A-Z_]+)=(.*)$", text, flags=re.M))
    mentioned = set(re.findall(r"^#?(L3TOL1_[A-Z_]+)=", text, flags=re.M))
    return active, mentioned


class TestSystemd:
    def test_verify(self, tmp_path: Path) -> None:
        """`systemd-analyze verify` passes with no warning about the unit.

        verify checks that ExecStart's program exists. /usr/local/bin/l3tol1 is where the unit
        expects the installed program (README: a venv in /opt/l3tol1, linked from there), which
        this machine does not have; so the unit is verified as a copy in which only that path is
        replaced by this venv's l3tol1, the same console script. Every other line is verified as
        written.
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

    def test_service_settings(self) -> None:
        unit = unit_settings()
        expected = {
            "Type": "simple",
            "ExecStart": "/usr/local/bin/l3tol1",
            "EnvironmentFile": "/etc/l3tol1/l3tol1.env",
            "Restart": "on-failure",
            "KillSignal": "SIGTERM",
            "TimeoutStopSec": "15",
            "DynamicUser": "yes",
            "StateDirectory": "l3tol1",
            "NoNewPrivileges": "yes",
            "ProtectSystem": "strict",
            "ProtectHome": "yes",
            "PrivateTmp": "yes",
        }
        for key, value in expected.items():
            assert unit.get(key) == [value], key

    def test_env_file_fits_the_unit(self) -> None:
        unit = unit_settings()
        active, _ = env_file()
        writable = " ".join(unit["ReadWritePaths"]).split()
        state = "/var/lib/" + unit["StateDirectory"][0]
        settings = settings_from(active)
        assert settings.follow is True
        assert settings.checkpoint is not None and str(settings.checkpoint.parent) == state
        for path in (settings.output_file, settings.reject_path, settings.checkpoint):
            assert str(path.parent) in writable, f"{path} is not in ReadWritePaths="
        assert not str(settings.input_file).startswith("/home/"), "ProtectHome=yes hides /home"

    def test_env_file_documents_every_option(self) -> None:
        active, mentioned = env_file()
        assert set(active) <= mentioned <= option_variables()
        assert option_variables() <= mentioned, "options missing from deploy/l3tol1.env"
