"""Fixtures of the system tests: a real nats-server, and one generated stream with the output of
one uninterrupted run over it (what the kill -9 loops and the signal tests compare with)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import cli
from tests.system.jetstream import NatsServer
from tests.system.kills import files_of, make_stream


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A JetStream server of its own for the test, on a free loopback port, with a fresh store."""
    server = NatsServer(tmp_path / "nats-store")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def stream(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes, bytes]:
    """300k generated events and the output of one uninterrupted run over them."""
    folder = tmp_path_factory.mktemp("stream")
    src = make_stream(folder / "l3.csv", 300_000, seed=11)
    out = folder / "l1.csv"
    result = cli("-i", src, "-o", out, "--no-follow", "--max-pending", "1000", timeout=300)
    assert result.returncode == 0, result.stderr
    output, rejects = files_of(out)
    assert output.count(b"\n") > 20_000
    reasons = {json.loads(line)["reason"] for line in rejects.splitlines()}
    assert reasons == {"bad seq_num", "late", "duplicate"} and rejects.count(b"\n") >= 60
    return src, output, rejects
