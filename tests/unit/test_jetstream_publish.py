"""The publisher's sending (`l3tol1.jetstream.publish.PublishStage`) against a fake JetStream:
it reads on while a partition's message is stored, each message fenced on the one before, and
waits for the server only when told to (before a checkpoint, at the end). No server."""

from __future__ import annotations

from typing import Any, cast

import anyio

from l3tol1.core.records import Event
from l3tol1.jetstream.client import JetStream
from l3tol1.jetstream.publish import PublishStage
from l3tol1.jetstream.wire import PREV, read_l3
from l3tol1.settings import Settings
from l3tol1.signals import Stop

T = "2021-08-03 01:00:00.100000 UTC"


def events(core: Any, first: int, count: int) -> Any:
    return core.events(
        [Event(first + i, 0, "ESZ6", f"o{i}", 0, 100, 5, T, 1, "", True) for i in range(count)]
    )


class GatedJetStream:
    """Stores each message once ``gate`` is open; records what it was sent."""

    def __init__(self) -> None:
        self.gate = anyio.Event()
        self.stored: list[tuple[int, dict[str, str], bytes]] = []  # (fence, headers, body)
        self.in_flight = 0

    async def publish_fenced(
        self, subject: str, body: bytes, headers: dict[str, str], *, after: int, msg_id: str
    ) -> int:
        self.in_flight += 1
        await self.gate.wait()
        self.in_flight -= 1
        self.stored.append((after, headers, body))
        return len(self.stored) * 10  # a stream seq: the fence of the next message


def test_the_publisher_reads_on_while_a_message_is_stored(core: Any) -> None:
    stage = PublishStage(Settings(partitions=1), core, cast(Any, None), follow=True,
                         stop=Stop(None))  # fmt: skip
    fake = GatedJetStream()
    js = cast(JetStream, fake)

    async def scenario() -> None:
        # A flush that waited for the closed gate would hang: bounded, so that it fails.
        with anyio.fail_after(30):
            await steps()

    async def steps() -> None:
        async with anyio.create_task_group() as senders:
            stage.senders = senders
            stage._add(events(core, 1, 3), False, None)
            await stage._flush(js, everything=True)  # returns with the message in flight
            await anyio.wait_all_tasks_blocked()
            assert fake.in_flight == 1 and not fake.stored
            stage._add(events(core, 4, 2), False, None)
            await stage._flush(js, everything=True)  # joins the partition's next message
            assert fake.in_flight == 1
            fake.gate.set()
            await stage._flush(js, everything=True, wait=True)
            assert not stage.sending and not stage.pending and not stage.sealed

    anyio.run(scenario)
    assert stage.events_published == 5 and stage.messages_published == 2
    (first_fence, first, body1), (second_fence, second, body2) = fake.stored
    assert (first_fence, second_fence) == (0, 10)  # each fenced on the one before
    assert (first[PREV], second[PREV]) == ("0", "10")
    seqs = [
        [e.seq for e in read_l3(h, b, seq=s, partitions=1, unpack=core.unpack_events).events]
        for h, b, s in ((first, body1, 10), (second, body2, 20))
    ]
    assert seqs == [[1, 2, 3], [4, 5]]
