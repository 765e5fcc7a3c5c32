"""Prometheus metrics and health: the real endpoint scraped while the service runs, read with
prometheus_client's own parser. The endpoint and the health verdict in process are
integration/test_metrics.py's."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from l3tol1 import __version__
from tests.conftest import REFERENCE_INPUT, add, http_get, start_cli, write_l3


def samples(text: str) -> dict[str, list[Sample]]:
    """Each sample name's samples, as Prometheus would read the exposition."""
    found: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the one sample ``name`` with ``labels``."""
    (match,) = [s.value for s in samples(text).get(name, []) if s.labels == labels]
    return match


def scrape_once_running(args: tuple[str | Path, ...], until: str) -> tuple[str, str]:
    """Start the CLI with ``--metrics-port 0``; its /metrics once they hold the line ``until``,
    and its /healthz; then SIGTERM, exit 0."""
    proc = start_cli(*args, "--metrics-port", "0")
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    with proc:
        reader.start()
        deadline = time.monotonic() + 60
        while not any("metrics_listening" in x for x in lines):
            assert time.monotonic() < deadline, "no metrics_listening log line"
            time.sleep(0.05)
        port = next(json.loads(x)["port"] for x in lines if "metrics_listening" in x)
        base = f"http://127.0.0.1:{port}"
        while True:
            status, text = http_get(f"{base}/metrics")
            if status == 200 and until in text.splitlines():
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.1)
        health = http_get(f"{base}/healthz")[1]
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        reader.join(timeout=5)
    assert proc.returncode == 0
    return text, health


class TestEndpoint:
    def test_scrape_while_running(self, tmp_path: Path) -> None:
        """/metrics has every counter with live values; /healthz is 200 while idle."""
        rows = [
            add(1, "a", "BUY", "10", "1"),
            add(2, "b", "SELL", "11", "1"),
            "junk",
            add(4, "c", "SELL", "10.5", "2"),
        ]
        src = write_l3(tmp_path / "l3.csv", rows)
        proc = start_cli(
            "-i",
            src,
            "-o",
            tmp_path / "o.csv",
            "--start-seq",
            "1",
            "--gap-timeout",
            "0.2",
            "-t",
            "0.05",
            "--metrics-port",
            "0",
        )
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
        with proc:
            reader.start()
            deadline = time.monotonic() + 20
            while not any("metrics_listening" in x for x in lines):
                assert time.monotonic() < deadline, "no metrics_listening log line"
                time.sleep(0.05)
            port = next(json.loads(x)["port"] for x in lines if "metrics_listening" in x)
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 20
            while True:
                status, text = http_get(f"{base}/metrics")
                if (
                    status == 200
                    and "l3tol1_gaps_skipped_total 1.0" in text
                    and "l3tol1_rows_written_total 2.0" in text
                ):
                    break
                assert time.monotonic() < deadline, text
                time.sleep(0.1)
            assert http_get(f"{base}/healthz") == (200, "ok\n")
            assert http_get(f"{base}/nothing")[0] == 404
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
            reader.join(timeout=5)
        assert proc.returncode == 0
        assert sample(text, "l3tol1_events_read_total") == 3
        assert sample(text, "l3tol1_events_applied_total") == 3
        assert sample(text, "l3tol1_rows_written_total") == 2
        assert sample(text, "l3tol1_rejects_total", reason="wrong field count") == 1
        assert sample(text, "l3tol1_seqs_lost_total") == 1
        assert sample(text, "l3tol1_pending_events") == 0
        assert sample(text, "l3tol1_last_seq_applied_info", seq="4") == 1
        assert sample(text, "l3tol1_seconds_since_last_input") >= 0
        assert sample(text, "l3tol1_flush_duration_seconds_count") >= 1
        assert "l3tol1_anomalies_total" in text

    def test_standard_metrics_build_info_and_exact_sequences(self, tmp_path: Path) -> None:
        """prometheus_client's process_* metrics are there, l3tol1_build_info names the version
        and the core, and a 19-digit seq_num is exported digit for digit (a float would end in
        ...6874e+18), never as a sample value."""
        text, health = scrape_once_running(
            ("-i", REFERENCE_INPUT, "-o", tmp_path / "o.csv", "--follow", "--log-format", "json"),
            until="l3tol1_rows_written_total 19290.0",  # the whole reference, written
        )
        assert health == "ok\n"
        found = samples(text)
        assert found["process_resident_memory_bytes"][0].value > 0
        assert found["process_cpu_seconds_total"][0].value > 0
        assert "process_start_time_seconds" in found and "python_info" in found
        (build,) = found["l3tol1_build_info"]
        assert build.value == 1 and build.labels["version"] == __version__
        assert build.labels["core"] in ("compiled", "python")
        (last,) = found["l3tol1_last_seq_applied_info"]
        assert last.labels == {"seq": "1627942268920687417"} and last.value == 1
        # the counters keep their names and meaning
        assert found["l3tol1_events_applied_total"][0].value == 34247
        assert found["l3tol1_rows_written_total"][0].value == 19290
        # no sample holds a number past float64's exact integers (2^53)
        assert all(abs(s.value) < 2**53 for values in found.values() for s in values)
