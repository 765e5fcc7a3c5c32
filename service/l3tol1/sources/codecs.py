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


# A read of the raw stream takes what one read brings, up to _ZSTD_READ (a file: all of it, so
# that few large chunks travel on; a pipe: what its writer wrote), decompressed _ZSTD_PIECE at a
# time: what comes before damaged data is handed out before the error, and a read stops once it
# has the size asked for (the rest of the raw bytes wait for the next).
_ZSTD_READ = 1 << 18
_ZSTD_PIECE = 1 << 14


class _Zstd:
    """zstd frames one after the other, decompressed as they come; a stream that ends inside a
    frame is an error (zstandard's own stream reader says nothing of it)."""

    def __init__(self, raw: BinaryIO) -> None:
        import zstandard  # only runs that read zstd pay for the import

        self._raw = raw
        self._context = zstandard.ZstdDecompressor()
        self._frame = self._context.decompressobj()
        self._in_frame = False
        self._pending = memoryview(b"")  # raw bytes read, not decompressed yet
        self._error: Exception | None = None  # damage met after the bytes handed out last

    def read1(self, size: int = -1, /) -> bytes:
        """Decompressed bytes from one read of the raw stream, about ``size`` at most (one
        piece's worth more); b"" at its end.

        :raises EOFError: the stream ends inside a frame.
        :raises zstandard.ZstdError: damaged data, once the bytes before it are handed out.
        """
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        out: list[bytes] = []
        got = 0
        while not got:
            if not self._pending:
                self._pending = memoryview(self._raw.read1(_ZSTD_READ))  # type: ignore[attr-defined]
                if not self._pending:
                    if self._in_frame:
                        raise EOFError("the zstd stream ends inside a frame")
                    return b""
            while self._pending and not 0 < size <= got:
                piece = self._pending[:_ZSTD_PIECE]
                self._pending = self._pending[_ZSTD_PIECE:]
                try:
                    self._decompress(piece, out)
                except Exception as exc:  # zstandard's ZstdError: damaged data
                    if not out:
                        raise
                    self._error = exc
                    self._pending = memoryview(b"")
                    break
                finally:
                    got = sum(map(len, out))
        return out[0] if len(out) == 1 else b"".join(out)

    def _decompress(self, data: memoryview | bytes, out: list[bytes]) -> None:
        """Decompress ``data`` (across the ends of frames) onto ``out``."""
        while data:
            self._in_frame = True
            block = self._frame.decompress(data)
            if block:
                out.append(block)
            if not self._frame.eof:
                return
            data = self._frame.unused_data  # the next frame begins here
            self._frame = self._context.decompressobj()
            self._in_frame = False
