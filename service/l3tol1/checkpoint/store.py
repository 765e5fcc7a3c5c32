"""The checkpoint file (SPEC §8): read at start, replaced atomically at each cut, locked.

The lock (``<path>.lock``, flock) keeps a second run off the checkpoint for the whole run; a
save is `replace_file`'s temp-fsync-rename-fsync, so a crash leaves the previous checkpoint or
the new one; a temporary file a crash left is removed at load (and the fact logged).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from l3tol1.checkpoint.codec import decode, encode
from l3tol1.checkpoint.model import Checkpoint
from l3tol1.errors import CheckpointError, OutputError
from l3tol1.sinks.files import replace_file, take_lock

__all__ = ["CheckpointStore"]


class CheckpointStore:
    """Reads and atomically replaces one checkpoint file; holds ``<path>.lock`` while in use,
    so that two runs never share a checkpoint."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._temp = path.with_name(path.name + ".tmp")
        self._lock_path = path.with_name(path.name + ".lock")
        self._lock_fd = -1
        self.saves = 0
        self.last_size = 0  # bytes of the last checkpoint written
        self.last_seconds = 0.0  # how long encoding and writing it took

    def lock(self) -> None:
        """Create and lock ``<path>.lock``: proves the directory is writable, and keeps a
        second run off this checkpoint.

        :raises CheckpointError: the directory is missing or not writable, or the lock is held.
        """
        try:
            fd = os.open(self._lock_path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise CheckpointError(
                f"cannot use checkpoint {self.path}: {exc.strerror} ({self._lock_path})"
            ) from exc
        self._lock_fd = fd
        take_lock(fd, self.path, "checkpoint")

    def unlock(self) -> None:
        """Release the lock; safe to call twice."""
        if self._lock_fd >= 0:
            fd, self._lock_fd = self._lock_fd, -1
            os.close(fd)

    def load(self) -> tuple[Checkpoint | None, bool]:
        """The stored checkpoint (None if there is none) and whether a stale temp was removed.

        :raises CheckpointError: the file is unreadable, of another format, or damaged.
        """
        removed_temp = False
        if self._temp.exists():
            # A crash while writing leaves the temp file; the previous checkpoint still stands.
            self._temp.unlink()
            removed_temp = True
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None, removed_temp
        except IsADirectoryError:
            raise CheckpointError(f"checkpoint {self.path} is a directory") from None
        except OSError as exc:
            raise CheckpointError(f"cannot read checkpoint {self.path}: {exc.strerror}") from exc
        return decode(data, self.path), removed_temp

    def save(self, checkpoint: Checkpoint) -> None:
        """Replace the checkpoint atomically and durably (blocking: run it in a thread).

        :raises OutputError: the checkpoint could not be written (exit 1, like any write).
        """
        started = time.perf_counter()
        data = encode(checkpoint)
        try:
            replace_file(self.path, data)
        except OSError as exc:
            raise OutputError(f"cannot write checkpoint {self.path}: {exc.strerror}") from exc
        self.saves += 1
        self.last_size = len(data)
        self.last_seconds = time.perf_counter() - started
