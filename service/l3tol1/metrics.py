"""Prometheus metrics and a health endpoint (``--metrics-port``), off by default.

Counters are read from the pipeline when Prometheus scrapes (a custom collector), so the hot path
pays nothing for them; only flush durations are observed as they happen. The HTTP server runs in
a thread of its own: if the event loop ever blocks, /healthz still answers — with 503.

    GET /metrics   Prometheus text format (prometheus_client)
    GET /healthz   200 "ok", or 503 with the reason when a stage has stalled
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from l3tol1.errors import ConfigError
from l3tol1.log import get_logger

__all__ = ["MetricsServer", "RoleCollector", "serve_role_metrics"]

Counters = Callable[[], dict[str, Any]]
Health = Callable[[], tuple[bool, str]]

_COUNTERS = (
    ("events_read", "L3 events parsed from the input"),
    ("events_applied", "L3 events applied to the book"),
    ("rows_written", "L1 rows written to the output"),
    ("gaps_skipped", "gaps in seq_num declared lost"),
    ("seqs_lost", "seq_nums inside gaps declared lost"),
    ("rotations", "input file rotations followed"),
    ("truncations", "input file truncations followed"),
    ("events_skipped", "events of instruments left out by --instruments"),
    ("crossed_quotes", "L1 rows written with bid above ask"),
    ("locked_quotes", "L1 rows written with bid equal to ask"),
)
# `l3tol1 publish` adds these to the file job's counters (SPEC §13).
_PUBLISH_COUNTERS = (
    ("events_published", "L3 events published to JetStream"),
    ("messages_published", "JetStream messages published"),
    ("events_already_published", "events skipped: the stream held them already (a restart)"),
    ("foreign_messages_skipped", "messages on the feed's subjects that are not l3tol1's"),
    ("marks_published", "gap and clock marks published (a feed of a schema of rows)"),
)


class _PipelineCollector(Collector):
    """Reads the pipeline's counters at scrape time."""

    def __init__(self, counters: Counters) -> None:
        self._counters = counters

    def collect(self) -> Iterator[Metric]:
        values = self._counters()
        for name, doc in _COUNTERS:
            yield CounterMetricFamily(f"l3tol1_{name}", doc, value=values[name])
        for name, doc in _PUBLISH_COUNTERS:
            if name in values:
                yield CounterMetricFamily(f"l3tol1_{name}", doc, value=values[name])
        yield _labelled("l3tol1_rejects", "rows rejected, by reason", "reason", values["rejects"])
        yield _labelled(
            "l3tol1_anomalies", "anomalies applied, by kind", "kind", values["anomalies"]
        )
        yield _labelled(
            "l3tol1_mbo_records",
            "Databento MBO records read, by action (A, M, C, R, T, F, N)",
            "action",
            values["records_by_action"],
        )
        yield _labelled(
            "l3tol1_dbn_records",
            "Databento DBN records read, by type (mbo, symbol_mapping, system, error, rtype_0xNN)",
            "type",
            values["records_by_type"],
        )
        yield GaugeMetricFamily(
            "l3tol1_pending_events", "events waiting for a missing seq", value=values["pending"]
        )
        yield GaugeMetricFamily(
            "l3tol1_instruments", "instruments with a book", value=values["instruments"]
        )
        if values["last_seq"] is not None:
            yield GaugeMetricFamily(
                "l3tol1_last_seq_applied",
                "seq_num of the last event applied",
                value=values["last_seq"],
            )
        yield GaugeMetricFamily(
            "l3tol1_seconds_since_last_input",
            "seconds since new bytes were last read from the input",
            value=values["seconds_since_last_input"],
        )


class RoleCollector(Collector):
    """The counters of `l3tol1 work` or `collect` (SPEC §13), read at scrape time: every
    integer counter as ``l3tol1_<role>_<name>_total``, and the lag of each partition (messages
    not yet delivered to this worker) as a gauge labelled by partition."""

    def __init__(self, role: str, counters: Counters) -> None:
        self._role = role
        self._counters = counters

    def collect(self) -> Iterator[Metric]:
        values = self._counters()
        for name, value in sorted(values.items()):
            if type(value) is int:
                yield CounterMetricFamily(f"l3tol1_{self._role}_{name}", name.replace("_", " "),
                                          value=value)  # fmt: skip
        lag = values.get("lag")
        if isinstance(lag, dict):
            family = GaugeMetricFamily(
                f"l3tol1_{self._role}_lag_messages",
                "messages of the partition not yet delivered to this worker",
                labels=["partition"],
            )
            for partition, count in sorted(lag.items()):
                family.add_metric([str(partition)], count)
            yield family


def _labelled(name: str, doc: str, label: str, counts: dict[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, count in sorted(counts.items()):
        family.add_metric([key], count)
    return family


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood the log: stay quiet."""


class MetricsServer:
    """Serves /metrics and /healthz on ``host:port`` from a daemon thread.

    :raises ConfigError: the port cannot be bound (in use, no permission).
    """

    def __init__(
        self,
        counters: Counters,
        health: Health,
        *,
        host: str,
        port: int,
        collector: Collector | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(collector or _PipelineCollector(counters))
        self.flush_seconds = Histogram(
            "l3tol1_flush_duration_seconds",
            "time to write (and fsync, when due) one flush of the output",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        metrics_app = make_wsgi_app(self.registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "")
            if path == "/healthz":
                ok, detail = health()
                start_response(
                    "200 OK" if ok else "503 Service Unavailable",
                    [("Content-Type", "text/plain; charset=utf-8")],
                )
                return [detail.encode() + b"\n"]
            if path == "/metrics":
                return metrics_app(environ, start_response)  # type: ignore[no-any-return]
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"try /metrics or /healthz\n"]

        try:
            self._server: WSGIServer = make_server(host, port, app, handler_class=_QuietHandler)
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from exc
        self.port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, daemon=True, name="l3tol1-metrics"
        )

    def start(self) -> None:
        """Begin answering requests."""
        self._thread.start()

    def close(self) -> None:
        """Stop answering and release the port; safe to call twice."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()


def serve_role_metrics(settings: Any, role: str, counters: Counters) -> MetricsServer | None:
    """The metrics endpoint of `l3tol1 work` or `collect` (``--metrics-port``), serving its
    counters, started; None without the option."""
    if settings.metrics_port is None:
        return None
    server = MetricsServer(
        counters,
        lambda: (True, "ok"),
        host=settings.metrics_host,
        port=settings.metrics_port,
        collector=RoleCollector(role, counters),
    )
    server.start()
    get_logger().info("metrics_listening", host=settings.metrics_host, port=server.port)
    return server
