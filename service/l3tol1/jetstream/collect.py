"""`l3tol1 collect` (SPEC §13): the L1 rows of every partition into the file job's output.

The collector reads the feed's L1 subjects in stream order (rows become visible only when the
worker's atomic batch that carries them commits, so it never sees a row twice or a row without
its state) and writes them with the file job's writer: CSV (SPEC §2) or Parquet (§11), flushed
by size and age. With ``--no-follow`` it stops, exit 0, once every partition's end mark has come.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import anyio

from l3tol1.core import load
from l3tol1.errors import ConfigError
from l3tol1.jetstream.client import JetStream, connect
from l3tol1.jetstream.wire import END, LAYOUT, Names, decode_layout, decode_quotes
from l3tol1.jetstream.work import start_metrics
from l3tol1.log import get_logger
from l3tol1.settings import Settings
from l3tol1.sinks.base import Sink
from l3tol1.sinks.csv import CsvSink
from l3tol1.sinks.parquet import ParquetSink
from l3tol1.sinks.rejects import RejectSink
from l3tol1.sinks.writer import Writer

__all__ = ["Collector"]

FETCH_BATCH = 256
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Collector:
    """One `l3tol1 collect` process."""

    def __init__(self, settings: Settings) -> None:
        if settings.checkpoint is not None:
            raise ConfigError(
                "collect --checkpoint is not available yet: without it, collect writes the"
                " whole output again from the feed's stream at each start"
            )
        self.settings = settings
        self.names = Names(settings.subject_prefix, settings.feed)
        self.follow = settings.follow is not False
        self.log = get_logger()
        core = load("python")  # the rows arrive as Quote records: the reference formatter
        self.output: Sink
        if settings.parquet:
            self.output = ParquetSink(
                settings.output_file,
                part_rows=settings.part_rows,
                part_interval=settings.part_interval if self.follow else None,
                clock=time.monotonic,
            )
        else:
            self.output = CsvSink(settings.output_file, formatter=core.formatter)
        self.output.open()
        rejects = RejectSink(Path(os.devnull))  # the publisher keeps the rejects
        rejects.open()
        self.writer = Writer(
            self.output,
            rejects,
            batch_size=settings.batch_size,
            max_flush_interval=settings.max_flush_interval,
            checkpointing=False,
        )
        self.stopping = False
        self.rows = 0
        self.ended: set[str] = set()

    async def run(self) -> None:
        nc = await connect(self.settings.nats_url, f"l3tol1-collect-{self.names.feed}")
        js = JetStream(nc, self.names)
        metrics = start_metrics(self.settings, "collect", self.summary)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch_signals)
                await self._collect(js)
                tg.cancel_scope.cancel()
        finally:
            if metrics is not None:
                metrics.close()
            with anyio.CancelScope(shield=True):
                await self.writer.finish(time.monotonic())
                await self.writer.aclose()
                await nc.close()

    async def _collect(self, js: JetStream) -> None:
        from nats.errors import TimeoutError as NatsTimeout
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        partitions = await self._wait_for_feed(js)
        await js.ensure_l1_stream()
        await self.output.start(None)
        self.log.info("start", role="collect", feed=self.names.feed, partitions=partitions,
                      output_file=str(self.settings.output_file))  # fmt: skip
        subscription = await js.js.pull_subscribe(
            self.names.l1("*"),
            stream=self.names.l1_stream,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.NONE,
                inactive_threshold=60.0,
            ),
        )
        layout_set = False
        writer = self.writer
        while not self.stopping:
            if not self.follow and len(self.ended) >= partitions:
                return
            try:
                msgs = await subscription.fetch(FETCH_BATCH, timeout=0.2)
            except NatsTimeout:
                msgs = []
            now = time.monotonic()
            for msg in msgs:
                headers = msg.headers or {}
                if not layout_set and LAYOUT in headers:
                    self.output.set_layout(*decode_layout(headers[LAYOUT]))
                    layout_set = True
                if END in headers:
                    self.ended.add(msg.subject.rsplit(".", 1)[1])
                    continue
                quotes = decode_quotes(msg.data)
                writer.add(quotes, [], now)
                self.rows += len(quotes)
            if not msgs and writer.holds_rows:
                await writer.flush(now, sync=True)  # caught up: nothing more to batch with
            await writer.flush_if_due(now)

    async def _wait_for_feed(self, js: JetStream) -> int:
        while not self.stopping:
            partitions = await js.partitions()
            if partitions is not None:
                return partitions
            await anyio.sleep(0.2)
        return 0

    async def _watch_signals(self) -> None:
        with anyio.open_signal_receiver(*_STOP_SIGNALS) as signals:
            async for signum in signals:
                if self.stopping:
                    raise SystemExit(128 + signum)
                self.log.info("stopping", signal=signal.Signals(signum).name)
                self.stopping = True

    def summary(self) -> dict[str, Any]:
        return {"rows_written": self.rows, "partitions_ended": len(self.ended)}
