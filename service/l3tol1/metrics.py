"""Prometheus metrics and a health endpoint (``--metrics-port``), off by default.

Everything goes through prometheus_client: its registry (with its standard ``process_*``,
``python_info`` and ``python_gc_*`` collectors), its exposition and its threading WSGI server.
Counters are read from the pipeline when Prometheus scrapes (a custom collector), so the hot path
pays nothing for them; only flush durations are observed as they happen. The HTTP server runs in
threads of its own: if the event loop ever blocks, /healthz still answers — with 503.

A sequence number is a 64-bit integer, which a Prometheus sample (a float64) cannot hold past
2^53: ``l3tol1_last_seq_applied_info`` carries it as a label, digit for digit.

    GET /metrics   Prometheus text format (prometheus_client)
    GET /healthz   200 "ok", or 503 with the reason when a stage has stalled
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Histogram,
    Info,
    make_wsgi_app,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

from l3tol1 import __version__
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
        if values["last_seq"] is not None:  # a label: a float would lose its last digits
            yield InfoMetricFamily(
                "l3tol1_last_seq_applied",
                "seq_num of the last event applied (published, for publish), exact",
                value={"seq": str(values["last_seq"])},
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
    """Serves /metrics and /healthz on ``host:port`` from daemon threads (one per request, so a
    slow scraper holds up no other).

    :param core: the core that runs ("compiled" or "python"), for ``l3tol1_build_info``.
    :raises ConfigError: the port cannot be bound (in use, no permission).
    """

    def __init__(
        self,
        counters: Counters,
        health: Health,
        *,
        host: str,
        port: int,
        core: str,
        collector: Collector | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        # prometheus_client's standard metrics: the same collectors as its default registry
        # (process_* reads /proc at scrape time; python_info; python_gc_*).
        for standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(standard)
        Info("l3tol1_build", "the l3tol1 that runs: its version and core",
             registry=self.registry).info({"version": __version__, "core": core})  # fmt: skip
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
            self._server: WSGIServer = make_server(host, port, app, ThreadingWSGIServer,
                                                   handler_class=_QuietHandler)  # fmt: skip
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
        core=_core_name(settings.core),
        collector=RoleCollector(role, counters),
    )
    server.start()
    get_logger().info("metrics_listening", host=settings.metrics_host, port=server.port)
    return server


def _core_name(option: str) -> str:
    """The core that ``--core option`` runs (the role loaded it already: no cost)."""
    from l3tol1.core import load

    try:
        return load(option).name
    except ImportError:  # --core compiled without one: the role itself says so
        return option
