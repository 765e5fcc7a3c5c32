"""Prometheus metrics and health in process: the endpoint's answer to a verdict, and the verdict of
a pipeline's stages under a clock passed in. The endpoint scraped while the real service runs
is system/test_metrics.py's."""

from __future__ import annotations

from pathlib import Path

import structlog

from l3tol1.metrics import MetricsServer
from l3tol1.run import Pipeline, file_job
from l3tol1.settings import Settings
from l3tol1.signals import Stop
from tests.conftest import add, http_get, write_l3


class TestEndpoint:
    def test_unhealthy_is_503_with_the_reason(self) -> None:
        """The endpoint maps an unhealthy verdict to 503 and says why."""
        verdict = [True, "ok"]
        server = MetricsServer(
            lambda: {}, lambda: (verdict[0], verdict[1]), host="127.0.0.1", port=0, core="python"
        )
        server.start()
        try:
            url = f"http://127.0.0.1:{server.port}/healthz"
            assert http_get(url) == (200, "ok\n")
            verdict[:] = [False, "stalled: the writer stage has not moved for 31 s"]
            assert http_get(url) == (503, "stalled: the writer stage has not moved for 31 s\n")
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
