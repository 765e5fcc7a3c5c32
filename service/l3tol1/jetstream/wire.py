"""What travels through JetStream between the roles (SPEC §13): names, headers, message bodies.

Pure: no I/O, no NATS import. Three subjects per partition of a feed:

    <prefix>.l3.<feed>.<p>     ordered L3 events (publish -> work), stream <prefix>-<feed>-l3
    <prefix>.l1.<feed>.<p>     L1 quotes (work -> collect),          stream <prefix>-<feed>-l1
    <prefix>.state.<feed>.<p>  the owner's checkpoint (books and the last L3 message applied),
                               in the L1 stream, so that it commits atomically with the rows

A message body is a batch of events or quotes packed by the core (`l3tol1.core.wire`: fixed-size
binary records, packed and unpacked in C by the compiled core). An end-of-feed mark is a message
with the `END` header and no body.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Names", "decode_layout", "encode_layout"]

# Headers of our own (NATS's are Nats-*).
LAST_SEQ = "L3tol1-Last-Seq"  # the feed seq of the last event in an L3 message
LAYOUT = "L3tol1-Layout"  # "1,0": whether rows have an instrument column, ns times
END = "L3tol1-End"  # an end-of-feed mark (its value: the partition count)
PREV = "L3tol1-Prev"  # on L3 messages: the stream seq of the subject's message before this one
ROW_NAMES = "L3tol1-Row-Names"  # Databento: JSON [[book key, day, name of its rows], ...]
COVERS = "L3tol1-Covers"  # on L1 messages: the L3 stream seq the partition's rows now reach
STATE_PART = "L3tol1-State-Part"  # "i/n": one of the n messages of a worker's state
# A message stays well under NATS's default max_payload (1 MiB).
MAX_BODY = 512 * 1024


@dataclass(frozen=True, slots=True)
class Names:
    """The stream and subject names of one feed."""

    prefix: str
    feed: str

    @property
    def l3_stream(self) -> str:
        return f"{self.prefix}-{self.feed}-l3"

    @property
    def l1_stream(self) -> str:
        return f"{self.prefix}-{self.feed}-l1"

    def l3(self, partition: int | str) -> str:
        return f"{self.prefix}.l3.{self.feed}.{partition}"

    def l1(self, partition: int | str) -> str:
        return f"{self.prefix}.l1.{self.feed}.{partition}"

    def state(self, partition: int | str) -> str:
        return f"{self.prefix}.state.{self.feed}.{partition}"

    def consumer(self, partition: int) -> str:
        return f"work-{partition}"


def encode_layout(layout: tuple[bool, bool]) -> str:
    return f"{int(layout[0])},{int(layout[1])}"


def decode_layout(text: str) -> tuple[bool, bool]:
    a, b = text.split(",")
    return a == "1", b == "1"
