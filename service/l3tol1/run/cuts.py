"""When a checkpoint is cut, and how it is saved (SPEC §8).

`CutPolicy` is the one place that decides when: every ``interval`` seconds while data flows,
stretched to twenty times what the last save took (a large checkpoint — a deep book, many
waiting events — then costs at most about 5% of the run); soon after the writer says a Parquet
part must close (a part is durable only whole, so it closes at a cut); at the end of the input;
at a clean stop. The feed step asks it (`due`) and takes the cut; the write stage tells it what
the writer wants (`want`) and what a save took (`saved`).

`CheckpointSaver` saves a cut once the rows up to it are durable: flush and fsync, close the
parts, write the checkpoint atomically, then make the parts it names visible.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import anyio

from l3tol1.checkpoint import Checkpoint, CheckpointStore, RunOptions
from l3tol1.run.batch import Cut
from l3tol1.sinks.writer import Writer

__all__ = ["CheckpointSaver", "CutPolicy"]


class CutPolicy:
    """When the next checkpoint is due (``now`` is any monotonic clock's seconds)."""

    def __init__(self, interval: float, now: float) -> None:
        self.interval = interval
        self.next_due = now + interval

    def due(self, now: float) -> bool:
        """Whether a cut is due now (when there is something new to record)."""
        return now >= self.next_due

    def want(self) -> None:
        """Cut at the next batch: a part waits to close."""
        self.next_due = -math.inf

    def saved(self, now: float, seconds: float) -> None:
        """A checkpoint was saved at ``now``, in ``seconds``: the next is due after both the
        interval and twenty times that."""
        self.next_due = now + max(self.interval, 20 * seconds)


class CheckpointSaver:
    """Saves the checkpoint of each cut once its rows are durable."""

    def __init__(
        self,
        store: CheckpointStore,
        options: RunOptions,
        writer: Writer,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.options = options
        self.writer = writer
        self.clock = clock

    async def save(self, cut: Cut, now: float, policy: CutPolicy) -> None:
        """Make every row up to the cut durable, then record the cut; parts closed at the cut
        become visible once the checkpoint that names them is saved."""
        writer = self.writer
        await writer.flush(now, sync=True)
        await writer.output.close_parts(all_rows=True)
        checkpoint = Checkpoint(
            options=self.options,
            input=cut.input,
            feed=cut.feed,
            instruments=cut.instruments,
            output=writer.output.state(),
            rejects=writer.rejects.state(),
            names=cut.names,
        )
        await anyio.to_thread.run_sync(self.store.save, checkpoint)
        await writer.output.commit()
        policy.saved(self.clock(), self.store.last_seconds)
