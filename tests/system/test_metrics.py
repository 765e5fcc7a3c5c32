"""Prometheus metrics and health: the real endpoint scraped while the service runs. The endpoint
and the health verdict in process are integration/test_metrics.py's."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from pathlib import Path

from tests.conftest import add, http_get, start_cli, write_l3


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
        assert sample(text, 'l3tol1_rejects_total{reason="wrong field count"}') == 1
        assert sample(text, "l3tol1_seqs_lost_total") == 1
        assert sample(text, "l3tol1_pending_events") == 0
        assert sample(text, "l3tol1_last_seq_applied") == 4
        assert sample(text, "l3tol1_seconds_since_last_input") >= 0
        assert sample(text, "l3tol1_flush_duration_seconds_count") >= 1
        assert "l3tol1_anomalies_total" in text
