"""Output files: opened without harm, locked against a second writer, cut back on resume.

`OutputFile` is the one place where an output path becomes a file descriptor, and where OS
errors become `ConfigError` (before the run: the path is unusable) or `OutputError` (during it:
a write failed). Opening never truncates: `start` does, once every other check has passed.

A regular file is locked (``flock``, exclusive, never waited for) for the whole run, so that a
second l3tol1 on the same file stops with a line naming the first one's pid. Pipes and devices
(``-o /dev/stdout``, ``/dev/null``) are written as they are: no lock, no truncation, no fsync,
and no checkpoint can claim them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread

from l3tol1.core.plain import PlainReader
from l3tol1.errors import CheckpointError, ConfigError, OutputError

__all__ = [
    "FileRecord",
    "OutputFile",
    "check_record",
    "lock_holder",
    "replace_file",
    "take_lock",
]


@dataclass(frozen=True, slots=True)
class FileRecord:
    """How a checkpoint names an output file: its path, identity and size at the cut."""

    path: str
    dev: int
    ino: int
    size: int

    def to_plain(self) -> dict[str, Any]:
        return {"path": self.path, "dev": self.dev, "ino": self.ino, "size": self.size}

    @classmethod
    def from_plain(cls, obj: Any, where: str, read: PlainReader) -> FileRecord:
        """The record `to_plain` gave, checked.

        :raises PlainDataError: a value is missing or of the wrong type.
        """
        return cls(
            path=read.string(obj, "path", where),
            dev=read.integer(obj, "dev", where),
            ino=read.integer(obj, "ino", where),
            size=read.integer(obj, "size", where),
        )


def check_record(record: FileRecord, path: Path, what: str, checkpoint: Path) -> None:
    """Refuse to resume ``path`` from a checkpoint's ``record`` of another or a changed file.

    :raises CheckpointError: the record names another path; or the file is gone, was replaced
        (another inode) or holds fewer bytes than recorded.
    """
    if os.path.abspath(path) != record.path:
        raise CheckpointError(
            f"checkpoint {checkpoint} belongs to {what} {record.path}, not {path}"
        )
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CheckpointError(
            f"checkpoint {checkpoint} records {what} {path}, which no longer exists;"
            " remove the checkpoint to start over"
        ) from None
    except OSError as exc:
        raise CheckpointError(f"cannot check {what} {path}: {exc.strerror}") from exc
    # A device (`l3tol1 publish`'s /dev/null) keeps no bytes: only its identity is checked.
    cut = stat.S_ISREG(st.st_mode) and st.st_size < record.size
    if (st.st_dev, st.st_ino) != (record.dev, record.ino) or cut:
        raise CheckpointError(
            f"{what} {path} was replaced or cut since checkpoint {checkpoint} was written;"
            " remove the checkpoint to start over"
        )


def take_lock(fd: int, path: Path, what: str) -> None:
    """Lock an open file for this process alone.

    :raises ConfigError: another process holds the lock (its pid named when it can be found).
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = lock_holder(os.fstat(fd))
        who = f"another process (pid {holder})" if holder else "another process"
        raise ConfigError(
            f"{what} {path} is in use by {who}: two l3tol1 runs must not share a file"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot lock {what} {path}: {exc.strerror}") from exc


def lock_holder(st: os.stat_result) -> int | None:
    """The pid holding a ``flock`` on the file ``st`` describes, read from /proc/locks."""
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    with contextlib.suppress(OSError, ValueError), open("/proc/locks", encoding="ascii") as locks:
        for entry in locks:
            fields = entry.split()
            # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:5678 0 EOF"
            if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted:
                return int(fields[4])
    return None


class OutputFile:
    """One append-only output, named ``what`` in messages ("output", "reject file").

    ``size`` counts the bytes it holds: kept at start plus written since.
    """

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self.what = what
        self.size = 0
        self.regular = True
        self.created = False  # by this run's `open`: `discard` removes it
        self._fd = -1
        self._synced = True

    def open(self) -> None:
        """Open (creating it if needed, never truncating) and lock a regular file.

        :raises ConfigError: the path cannot be opened for writing or is locked.
        """
        flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
        try:
            try:
                fd = os.open(self.path, flags | os.O_EXCL, 0o644)
                self.created = True
            except FileExistsError:
                fd = os.open(self.path, flags, 0o644)
        except IsADirectoryError:
            raise ConfigError(f"{self.what} {self.path} is a directory") from None
        except OSError as exc:
            raise ConfigError(f"cannot open {self.path} for writing: {exc.strerror}") from exc
        self._fd = fd
        self.regular = stat.S_ISREG(os.fstat(fd).st_mode)
        if self.regular:
            try:
                take_lock(fd, self.path, self.what)
            except ConfigError:
                self.discard()
                raise

    def discard(self) -> None:
        """The run never began: remove the file if this run created it (a file that was there
        before is left as it was), and close it. Removed while still locked, so that no other
        run's file is ever removed."""
        if self.created and self._fd >= 0:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            self.created = False
        self.close()

    def start(self, keep: int | None) -> None:
        """Cut the file back to ``keep`` bytes (a checkpoint's record; None: empty it).

        :raises ConfigError: the file holds fewer than ``keep`` bytes.
        """
        if not self.regular:
            return
        size = os.fstat(self._fd).st_size
        if keep is not None and keep > size:
            raise ConfigError(
                f"{self.what} {self.path} holds {size} bytes but the checkpoint recorded {keep}:"
                " something else changed it"
            )
        try:
            os.ftruncate(self._fd, keep or 0)
            os.lseek(self._fd, keep or 0, os.SEEK_SET)
        except OSError as exc:
            raise OutputError(f"cannot truncate {self.path}: {exc.strerror}") from exc
        self.size = keep or 0

    def record(self) -> FileRecord:
        """The file's identity and size now, for a checkpoint."""
        st = os.fstat(self._fd)
        return FileRecord(os.path.abspath(self.path), st.st_dev, st.st_ino, self.size)

    async def write(self, data: bytes) -> None:
        """Append ``data``; a short write is retried until all of it is written. A pipe or
        device is written from a worker thread: its reader may be slow.

        :raises OutputError: the write failed (disk full, file too large, broken pipe...).
        """
        if self.regular:
            self._write(data)
        else:
            await anyio.to_thread.run_sync(self._write, data)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
                self.size += written
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror}") from exc
        self._synced = False

    async def sync(self) -> None:
        """fsync a regular file (in a worker thread, so the pipeline keeps moving).

        :raises OutputError: the fsync failed.
        """
        if self._synced or not self.regular:
            return
        try:
            await anyio.to_thread.run_sync(os.fsync, self._fd)
        except OSError as exc:
            raise OutputError(f"cannot sync {self.path}: {exc.strerror}") from exc
        self._synced = True

    def close(self) -> None:
        """Close (and unlock) the file; safe to call twice."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


def replace_file(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` atomically and durably: a temporary file beside it, written
    and fsynced, renamed over it, and the directory fsynced. A crash leaves the old file or the
    new one, never a mix (the temporary ``<path>.tmp`` may remain: a reader removes it). The one
    way every piece of l3tol1's own state (checkpoints) reaches the disk; blocking.

    :raises OSError: the write, sync or rename failed.
    """
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
