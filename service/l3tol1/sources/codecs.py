"""Compressed inputs, recognised by their magic bytes and decompressed as a stream (SPEC §10).

Each codec is the well-kept library's own streaming reader (gzip, bz2 and lzma from the standard
library, zstandard for zstd), reading across concatenated members or frames. A read returns at
most the size asked for, so a small file that expands enormously never lands in memory whole.
"""

from __future__ import annotations

from typing import BinaryIO, Protocol

__all__ = ["MAGIC_BYTES", "ByteReader", "codec_of", "decompressing", "too_short_to_tell"]

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


def too_short_to_tell(head: bytes, *magics: bytes) -> bool:
    """Whether ``head``, the first bytes of a stream, may still grow into a compression magic
    (or one of ``magics``): it is shorter than the magic and starts like it."""
    known = [magic for magic, _ in _MAGIC] + list(magics)
    return any(len(head) < len(magic) and magic.startswith(head) for magic in known)


def decompressing(raw: BinaryIO, codec: str) -> ByteReader:
    """A binary reader of ``raw``'s decompressed bytes (blocking: call it from a thread)."""
    # Each codec's module is imported by the runs that read it only (start-up time).
    if codec == "gzip":
        import gzip

        return gzip.GzipFile(fileobj=raw, mode="rb")
    if codec == "bzip2":
        import bz2

        return bz2.BZ2File(raw, mode="rb")
    if codec == "xz":
        import lzma

        return lzma.LZMAFile(raw, mode="rb")
    if codec == "zstd":
        return _Zstd(raw)
    raise ValueError(f"unknown codec {codec!r}")


_ZSTD_READ = 1 << 14


class _Zstd:
    """zstd frames one after the other, decompressed as they come; a stream that ends inside a
    frame is an error (zstandard's own stream reader says nothing of it)."""

    def __init__(self, raw: BinaryIO) -> None:
        import zstandard  # only runs that read zstd pay for the import

        self._raw = raw
        self._context = zstandard.ZstdDecompressor()
        self._frame = self._context.decompressobj()
        self._in_frame = False

    def read1(self, size: int = -1, /) -> bytes:
        """Decompressed bytes from one read of the raw stream; b"" at its end.

        :raises EOFError: the stream ends inside a frame.
        """
        while True:
            # Small raw reads: what comes before damaged data is handed out before the error.
            data = self._raw.read(_ZSTD_READ)
            if not data:
                if self._in_frame:
                    raise EOFError("the zstd stream ends inside a frame")
                return b""
            out = []
            while data:
                self._in_frame = True
                out.append(self._frame.decompress(data))
                if not self._frame.eof:
                    break
                data = self._frame.unused_data  # the next frame begins here
                self._frame = self._context.decompressobj()
                self._in_frame = False
            if any(out):
                return b"".join(out)
