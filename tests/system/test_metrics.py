"""Prometheus metrics and health: the real endpoint scraped while the service runs."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import structlog

from l3tol1.metrics import MetricsServer
from l3tol1.run import Pipeline, file_job
from l3tol1.settings import Settings
from l3tol1.signals import Stop
from tests.conftest import add, start_cli, write_l3


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def sample(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in metrics"
    return float(match.group(1))


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
                status, text = get(f"{base}/metrics")
                if (
                    status == 200
                    and "l3tol1_gaps_skipped_total 1.0" in text
                    and "l3tol1_rows_written_total 2.0" in text
                ):
                    break
                assert time.monotonic() < deadline, text
                time.sleep(0.1)
            assert get(f"{base}/healthz") == (200, "ok\n")
            assert get(f"{base}/nothing")[0] == 404
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
            reader.join(timeout=5)
        assert proc.returncode == 0
        assert sample(text, "l3tol1_events_read_total") == 3
        assert sample(text, "l3tol1_events_applied_total") == 3
        assert sample(text, "l3tol1_rows_written_total") == 2
        assert sample(text, 'l3tol1_rejects_total{reason="wrong field count"}') == 1
        assert sample(text, "l3tol1_seqs_lost_total") == 1
        assert sample(text, "l3tol1_pending_events") == 0
        assert sample(text, "l3tol1_last_seq_applied") == 4
        assert sample(text, "l3tol1_seconds_since_last_input") >= 0
        assert sample(text, "l3tol1_flush_duration_seconds_count") >= 1
        assert "l3tol1_anomalies_total" in text

    def test_unhealthy_is_503_with_the_reason(self) -> None:
        """The endpoint maps an unhealthy verdict to 503 and says why."""
        verdict = [True, "ok"]
        server = MetricsServer(
            lambda: {}, lambda: (verdict[0], verdict[1]), host="127.0.0.1", port=0
        )
        server.start()
        try:
            url = f"http://127.0.0.1:{server.port}/healthz"
            assert get(url) == (200, "ok\n")
            verdict[:] = [False, "stalled: the writer stage has not moved for 31 s"]
            assert get(url) == (503, "stalled: the writer stage has not moved for 31 s\n")
        finally:
            server.close()


class TestHealth:
    def make(self, tmp_path: Path, now: list[float]) -> Pipeline:
        src = write_l3(tmp_path / "l3.csv", [add(1, "a", "BUY", "10", "1")])
        settings = Settings(input_file=src, output_file=tmp_path / "o.csv", stall_timeout=30)
        return file_job(settings, stop=Stop(structlog.get_logger()), clock=lambda: now[0])

    def test_waiting_stages_are_healthy(self, tmp_path: Path) -> None:
        """Stages waiting for input, however long, are healthy."""
        now = [1000.0]
        pipeline = self.make(tmp_path, now)
        assert pipeline.report.health() == (True, "ok")

    def test_a_stage_holding_a_batch_too_long_is_a_stall(self, tmp_path: Path) -> None:
        """A stage that took a batch more than --stall-timeout ago (stuck disk, or blocked by
        a stuck stage after it) makes the service unhealthy."""
        now = [1000.0]
        pipeline = self.make(tmp_path, now)
        pipeline.health.busy["write"] = 990.0
        assert pipeline.report.health() == (True, "ok")
        now[0] = 1021.0
        assert pipeline.report.health() == (
            False,
            "stalled: the write stage has not moved for 31 s",
        )

    def test_idle_source_is_not_a_stall(self, tmp_path: Path) -> None:
        """A source waiting for the file to grow is idle, not stalled."""
        now = [1000.0]
        pipeline = self.make(tmp_path, now)
        pipeline.health.busy["source"] = 0.0
        pipeline.parts.source.last_active = 0.0
        pipeline.parts.source.idle = True
        assert pipeline.report.health()[0] is True
        pipeline.parts.source.idle = False
        assert pipeline.report.health()[0] is False
