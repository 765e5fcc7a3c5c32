"""Compressed inputs, recognised by their magic bytes and decompressed as a stream (SPEC §10).

Each codec is the well-kept library's own streaming reader (gzip, bz2 and lzma from the standard
library, zstandard for zstd), reading across concatenated members or frames. A read returns at
most the size asked for, so a small file that expands enormously never lands in memory whole.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
from typing import BinaryIO, Protocol

__all__ = ["MAGIC_BYTES", "ByteReader", "codec_of", "decompressing"]

# The longest magic below: how many bytes detection needs.
MAGIC_BYTES = 6
_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
)


class ByteReader(Protocol):
    """What the reading thread needs of a (decompressing) reader."""

    def read1(self, size: int = -1, /) -> bytes:
        """At most ``size`` bytes, from at most one read of what lies beneath."""
        ...


def codec_of(head: bytes) -> str | None:
    """The compression a stream starting with ``head`` uses, or None for plain bytes."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return None


def decompressing(raw: BinaryIO, codec: str) -> ByteReader:
    """A binary reader of ``raw``'s decompressed bytes (blocking: call it from a thread)."""
    if codec == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if codec == "bzip2":
        return bz2.BZ2File(raw, mode="rb")
    if codec == "xz":
        return lzma.LZMAFile(raw, mode="rb")
    if codec == "zstd":
        import zstandard  # only runs that read zstd pay for the import

        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    raise ValueError(f"unknown codec {codec!r}")
