"""The JetStream primitives the roles are built on (SPEC §13), over nats-py.

Nothing here is a protocol of our own: every guarantee is one of JetStream's.

- Streams are created on first use with explicit settings (`L3_STREAM`, `L1_STREAM`), and a
  feed's partition count and schema (SPEC §14) live in its L3 stream's metadata: another count
  or schema is refused (no schema there: a feed made before schemas, ``l1``).
- `publish_fenced`: one message with ``Nats-Expected-Last-Subject-Sequence`` (no other writer
  can have written the subject since) and ``Nats-Msg-Id`` (a retry is stored once).
- `publish_atomic`: an atomic batch (``Nats-Batch-*`` headers, NATS >= 2.12): all its messages
  are stored, or none.
- `PinnedPuller`: a pull consumer of a priority group with policy ``pinned_client``: one client
  at a time receives the partition's messages; when it stops pulling for ``PIN_TIMEOUT``, the
  server pins another. nats-py has no priority-group API yet, so pulls are raw API requests.
- `JetStream.previous`: a subject's last message before a stream sequence (a direct get of the
  batch form, ``multi_last`` with ``up_to_seq``, confirmed by the stream leader), to look past
  messages that are not l3tol1's.

Connecting, closing and retrying are connection.py's.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from l3tol1.errors import ConfigError, L3Error
from l3tol1.jetstream.connection import RETRY_FOR, retrying
from l3tol1.jetstream.wire import Names
from l3tol1.log import get_logger

T = TypeVar("T")

__all__ = ["BatchRejected", "FeedInfo", "JetStream", "PinnedPuller", "Stored"]

PIN_GROUP = "workers"
PIN_TIMEOUT = 2.0  # seconds without a pull before the server pins another worker
# At most this many bytes per pull of one partition. A worker may own every partition: what the
# server sends it at once must stay well under the 64 MiB it buffers for a client, past which
# it drops messages to it ("slow consumer"): 16 partitions x 2 MiB = 32 MiB.
PULL_BYTES = 2 * 1024 * 1024
PULL_EXPIRES = 0.5  # a pinned worker pulls at least this often (well under PIN_TIMEOUT)
DUPLICATE_WINDOW = 120.0  # seconds: Nats-Msg-Id deduplication of retried publishes
# Unacked messages go back to the pool after this long. The server pins a new worker only when
# it delivers it a message: when the old owner dies with everything delivered and unacked, the
# takeover waits for this redelivery, so it is short (a redelivery to a live owner is harmless:
# it skips what its state already includes).
ACK_WAIT = 2 * PIN_TIMEOUT
PARTITIONS_KEY = "l3tol1_partitions"
SCHEMA_KEY = "l3tol1_schema"
WORKER_TTL = 5.0  # seconds: a worker not heard from for this long no longer counts


class BatchRejected(L3Error):
    """JetStream refused a publish: ``code`` is its error code (10071: a fence failed)."""

    def __init__(self, code: int, description: str) -> None:
        super().__init__(f"JetStream refused the batch ({code}: {description})")
        self.code = code


FENCE_FAILED = (10071, 10164)  # wrong last sequence: someone else wrote the subject


@dataclass(frozen=True, slots=True)
class FeedInfo:
    """What a feed's publisher fixed when it created the feed."""

    partitions: int
    schema: str  # the rows its workers write (SPEC §14)


@dataclass(slots=True)
class Stored:
    """A stored message as the gets return it."""

    seq: int
    headers: dict[str, str]
    data: bytes
    subject: str = ""


class JetStream:
    """One connection's JetStream, for one feed."""

    def __init__(self, nc: Client, names: Names) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=5)
        self.names = names

    def replicas(self) -> int:
        """3 in a cluster (survives one server's loss), 1 on a single server."""
        info: dict[str, Any] = getattr(self.nc, "_server_info", {}) or {}
        return 3 if info.get("cluster") else 1

    async def ensure_l3_stream(self, partitions: int, schema: str = "l1") -> None:
        """Create the feed's L3 stream, or check that it has this partition count and schema."""
        info = await self.feed_info()
        if info is not None:
            found = info.partitions
            if found != partitions:
                raise ConfigError(
                    f"feed {self.names.feed!r} has {found} partitions; --partitions {partitions}"
                    " would send instruments to other partitions: keep "
                    f"{found}, or use another --feed"
                )
            if info.schema != schema:
                raise ConfigError(
                    f"feed {self.names.feed!r} has schema {info.schema}; --schema {schema} would"
                    f" mix two schemas in one feed: keep {info.schema}, or use another --feed"
                )
            return
        await self.js.add_stream(
            StreamConfig(
                name=self.names.l3_stream,
                subjects=[self.names.l3("*")],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                num_replicas=self.replicas(),
                discard=DiscardPolicy.NEW,  # full: refuse new events rather than lose old ones
                duplicate_window=DUPLICATE_WINDOW,
                allow_direct=True,
                metadata={PARTITIONS_KEY: str(partitions), SCHEMA_KEY: schema},
            )
        )

    async def partitions(self) -> int | None:
        """The feed's partition count, or None before its publisher created it."""
        info = await self.feed_info()
        return None if info is None else info.partitions

    async def feed_info(self) -> FeedInfo | None:
        """The feed's partition count and schema, or None before its publisher created it.

        :raises ConfigError: its schema is not one this l3tol1 writes (a newer version's).
        """
        try:
            info = await self.js.stream_info(self.names.l3_stream)
        except NotFoundError:
            return None
        metadata = info.config.metadata or {}
        schema = metadata.get(SCHEMA_KEY, "l1")  # a feed made before schemas: L1 rows
        from l3tol1.core.schemas import SCHEMAS

        if schema not in SCHEMAS:
            raise ConfigError(
                f"feed {self.names.feed!r} has schema {schema[:40]!r}, which this l3tol1 does"
                " not know"
            )
        return FeedInfo(int(metadata[PARTITIONS_KEY]), schema)

    async def wait_for_feed(self, stopping: Callable[[], bool]) -> FeedInfo:
        """The feed's partition count and schema, once its publisher has created the L3 stream
        (0 partitions when ``stopping`` says to give up first)."""
        said = False
        while not stopping():
            info = await retrying("the L3 stream", self.feed_info)
            if info is not None:
                return info
            if not said:
                get_logger().info("waiting_for_feed", feed=self.names.feed)
                said = True
            await asyncio.sleep(0.2)
        return FeedInfo(0, "l1")

    async def ensure_l1_stream(self) -> None:
        """Create the feed's L1 stream (rows and worker state; atomic batches allowed)."""
        config = StreamConfig(
            name=self.names.l1_stream,
            subjects=[self.names.l1("*"), self.names.state("*")],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=self.replicas(),
            discard=DiscardPolicy.NEW,
            duplicate_window=DUPLICATE_WINDOW,
            allow_direct=True,
            allow_atomic=True,
        )
        try:
            await self.js.stream_info(self.names.l1_stream)
        except NotFoundError:
            await self.js.add_stream(config)

    async def get_last(self, stream: str, subject: str) -> Stored | None:
        """The last message of a subject, or None (from the stream's leader)."""
        try:
            msg = await self.js.get_last_msg(stream, subject)
        except NotFoundError:
            return None
        return _stored(msg)

    async def get(self, stream: str, seq: int) -> Stored:
        """The message at stream sequence ``seq``.

        :raises NotFoundError: there is none (anymore).
        """
        return _stored(await self.js.get_msg(stream, seq))

    async def get_next(self, stream: str, subject: str, seq: int) -> Stored | None:
        """The first message of a subject at or after stream sequence ``seq``, or None (from the
        stream's leader: nothing stored is missed)."""
        try:
            msg = await self.js.get_msg(stream, seq, subject, next=True)
        except NotFoundError:
            return None
        return _stored(msg)

    async def previous(self, stream: str, subject: str, seq: int) -> Stored | None:
        """The last message of a subject before stream sequence ``seq``, or None.

        JetStream's get of a subject's last message takes no upper bound; the batch form of the
        direct get does (``multi_last`` with ``up_to_seq``, NATS >= 2.11). A direct get may be
        answered by a replica that is behind, so the answer is confirmed by the leader: the
        subject's next message after it must be at ``seq`` or later (else that one is nearer).
        """
        if seq <= 1:
            return None
        found = await self._last_up_to(stream, subject, seq - 1)
        while True:
            after = await self.get_next(stream, subject, 1 if found is None else found.seq + 1)
            if after is None or after.seq >= seq:
                return found
            found = after  # the replica that answered was behind

    async def _last_up_to(self, stream: str, subject: str, seq: int) -> Stored | None:
        """A direct get of the subject's last message at or before ``seq`` (any replica)."""
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox)
        try:
            request = {"multi_last": [subject], "up_to_seq": seq}
            await self.nc.publish(
                f"$JS.API.DIRECT.GET.{stream}", json.dumps(request).encode(), reply=inbox
            )
            found = None
            while True:  # the message (if any), then a status: 204 end of batch, 404 none
                msg = await sub.next_msg(timeout=5)
                headers = dict(msg.headers or {})
                status = headers.get("Status")
                if status is None:
                    found = Stored(int(headers["Nats-Sequence"]), headers, msg.data or b"",
                                   headers.get("Nats-Subject", ""))  # fmt: skip
                elif status in ("204", "404"):
                    return found
                else:  # 503: no replica answers now (an election, say): retried as no answer
                    raise NatsError(f"direct get from {stream}: status {status}")
        finally:
            await sub.unsubscribe()

    async def publish_fenced(
        self, subject: str, body: bytes, headers: dict[str, str], *, after: int, msg_id: str
    ) -> int:
        """Store one message only if the subject's last message is still ``after`` (0: none);
        return its stream sequence.

        :raises BatchRejected: the fence failed (another writer), or another refusal.
        """
        headers = {
            **headers,
            "Nats-Expected-Last-Subject-Sequence": str(after),
            "Nats-Msg-Id": msg_id,
        }
        loop = asyncio.get_running_loop()
        give_up = loop.time() + RETRY_FOR
        while True:
            try:
                reply = await self.nc.request(subject, body, timeout=5, headers=headers)
                break
            except (TimeoutError, NatsError):
                # No answer (a leader election, a reconnect): the same message again. If the
                # first was stored, its Nats-Msg-Id makes this one a duplicate, not a copy.
                if loop.time() > give_up:
                    raise
                await asyncio.sleep(0.5)
        answer = json.loads(reply.data)
        if "error" in answer:
            error = answer["error"]
            raise BatchRejected(error.get("err_code", 0), error.get("description", ""))
        if answer.get("duplicate"):  # a retry of a message that was stored
            return int(answer["seq"])
        return int(answer["seq"])

    async def publish_atomic(self, messages: list[tuple[str, bytes, dict[str, str]]]) -> int:
        """Store ``messages`` as one atomic batch; return the stream sequence of the last.

        :raises BatchRejected: nothing was stored (a fence on the first message failed...).
        """
        batch = uuid.uuid4().hex
        last = len(messages)
        for i, (subject, body, extra) in enumerate(messages, start=1):
            headers = {"Nats-Batch-Id": batch, "Nats-Batch-Sequence": str(i), **extra}
            if i == last:
                headers["Nats-Batch-Commit"] = "1"
            if i in (1, last):  # the first is answered (empty, or an error); the last commits
                reply = await self.nc.request(subject, body, timeout=10, headers=headers)
                if reply.data:
                    answer = json.loads(reply.data)
                    if "error" in answer:
                        error = answer["error"]
                        raise BatchRejected(error.get("err_code", 0), error.get("description", ""))
                    if i == last:
                        return int(answer["seq"])
            else:
                await self.nc.publish(subject, body, headers=headers)
        raise BatchRejected(0, "the commit was not answered")

    async def api(self, subject: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = b"" if body is None else json.dumps(body).encode()
        reply = await self.nc.request(subject, data, timeout=5)
        answer: dict[str, Any] = json.loads(reply.data)
        return answer

    async def ensure_pinned_consumer(self, partition: int) -> None:
        """The durable consumer of one partition's L3 subject, for the worker pool."""
        names = self.names
        durable, subject = names.consumer(partition), names.l3(partition)
        config = {
            "durable_name": durable,
            "filter_subject": subject,
            "deliver_policy": "all",
            "ack_policy": "explicit",
            "ack_wait": int(ACK_WAIT * 1e9),
            "max_ack_pending": 10_000,
            "replay_policy": "instant",
            "priority_groups": [PIN_GROUP],
            "priority_policy": "pinned_client",
            "priority_timeout": int(PIN_TIMEOUT * 1e9),
            "num_replicas": 0,  # the stream's
        }
        answer = await self.api(
            f"$JS.API.CONSUMER.CREATE.{names.l3_stream}.{durable}.{subject}",
            {"stream_name": names.l3_stream, "config": config, "action": "create"},
        )
        error = answer.get("error")
        if error and error.get("err_code") != 10148:  # 10148: exists (with another config)
            raise L3Error(f"cannot create consumer {durable}: {error.get('description')}")

    async def workers_bucket(self) -> Any:
        """The KV bucket where the feed's live workers keep a key each (expiring after
        `WORKER_TTL` without a put): how many share the partitions."""
        from nats.js.api import KeyValueConfig

        config = KeyValueConfig(
            bucket=f"{self.names.prefix}-{self.names.feed}-workers",
            ttl=WORKER_TTL,
            history=1,
            replicas=self.replicas(),
        )
        try:
            return await self.js.create_key_value(config)
        except Exception:  # another worker created it first: use it
            return await self.js.key_value(config.bucket)

    async def unpin(self, partition: int) -> None:
        """Give up the pin of a partition at once (a worker that stops)."""
        names = self.names
        await self.api(
            f"$JS.API.CONSUMER.UNPIN.{names.l3_stream}.{names.consumer(partition)}",
            {"group": PIN_GROUP},
        )

    async def reset_consumer(self, partition: int, seq: int) -> None:
        """Deliver the partition again from stream sequence ``seq`` (a new owner resumes where
        the last committed state ends, not where the old owner's unacked pulls were)."""
        names = self.names
        answer = await self.api(
            f"$JS.API.CONSUMER.RESET.{names.l3_stream}.{names.consumer(partition)}",
            {"seq": seq},
        )
        if "error" in answer:
            raise L3Error(f"cannot reset consumer: {answer['error'].get('description')}")


class PinnedPuller:
    """Pulls of one partition's consumer as a member of the worker pool."""

    def __init__(self, js: JetStream, partition: int) -> None:
        self.js = js
        self.partition = partition
        self.pin: str | None = None
        self.queue: asyncio.Queue[Msg] = asyncio.Queue()
        self.inbox = js.nc.new_inbox()
        self._sub: Any = None
        self.lost_pin = False  # set when the server said the pin moved

    async def start(self) -> None:
        async def put(msg: Msg) -> None:
            self.queue.put_nowait(msg)

        self._sub = await self.js.nc.subscribe(self.inbox, cb=put)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()

    async def pull(self, batch: int) -> list[Msg]:
        """Up to ``batch`` messages. The owner first takes what the partition holds now, at
        once (a ``no_wait`` pull); else, or when there is nothing, the next message is awaited
        for up to `PULL_EXPIRES` (a pull of one, so that no request outlives the call with room
        for more: a pull of many would wait for all of them, or for its expiry)."""
        if self.pin is not None:
            got = await self._request({"batch": batch, "max_bytes": PULL_BYTES, "no_wait": True})
            if got or self.pin is None:
                return got
        return await self._request({"batch": 1, "expires": int(PULL_EXPIRES * 1e9)})

    async def _request(self, request: dict[str, Any]) -> list[Msg]:
        names = self.js.names
        request["group"] = PIN_GROUP
        if self.pin is not None:
            request["id"] = self.pin
        await self.js.nc.publish(
            f"$JS.API.CONSUMER.MSG.NEXT.{names.l3_stream}.{names.consumer(self.partition)}",
            json.dumps(request).encode(),
            reply=self.inbox,
        )
        got: list[Msg] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PULL_EXPIRES + 1.0
        while len(got) < request["batch"]:
            try:
                msg = await asyncio.wait_for(self.queue.get(), max(0.01, deadline - loop.time()))
            except TimeoutError:
                break
            headers = msg.headers or {}
            status = headers.get("Status")
            if status and not msg.data:
                if status == "423":  # the pin moved to another worker
                    self.pin = None
                    self.lost_pin = True
                if status == "100":
                    continue  # a heartbeat
                break  # 404/408: nothing more now; 409/503: try again later
            pin = headers.get("Nats-Pin-Id")
            if pin is not None and pin != self.pin:
                self.pin = pin
            got.append(msg)
        return got


def _stored(msg: Any) -> Stored:
    return Stored(msg.seq or 0, dict(msg.headers or {}), msg.data or b"", msg.subject or "")


def stream_seq(msg: Msg) -> int:
    """The stream sequence of a delivered message (from its ack subject)."""
    return int(msg.metadata.sequence.stream)
