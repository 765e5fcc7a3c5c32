"""Finding a checkpoint's input again (SPEC §7, §8): by its identity, whatever its name now.

A followed file may have been rotated while l3tol1 was stopped: the checkpoint names the file by
device, inode and a sha256 of its first bytes (a reused inode or a replaced file is told apart),
so the file is looked for under its recorded name and beside it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Protocol

from l3tol1.errors import CheckpointError
from l3tol1.sources.base import fingerprint

__all__ = ["Recorded", "find_input"]


class Recorded(Protocol):
    """What a checkpoint records of its input (`checkpoint.InputRecord`)."""

    @property
    def path(self) -> str: ...
    @property
    def dev(self) -> int: ...
    @property
    def ino(self) -> int: ...
    @property
    def head_length(self) -> int: ...
    @property
    def head_sha256(self) -> str: ...
    @property
    def offset(self) -> int: ...
    @property
    def line(self) -> int: ...


def find_input(record: Recorded, path: Path, checkpoint: Path) -> tuple[Path, int, int] | None:
    """Where to resume reading: the recorded file (by inode and first bytes: ``path`` itself,
    or a name rotation gave it), its offset and line; None to start ``path`` from its start,
    when nothing of the recorded file had been consumed.

    :raises CheckpointError: the checkpoint names another input path, or a file that was
        replaced while l3tol1 was stopped.
    """
    if os.path.abspath(path) != record.path:
        raise CheckpointError(f"checkpoint {checkpoint} belongs to input {record.path}, not {path}")
    if record.ino == 0:
        return None  # no file was open yet: nothing of any file was consumed
    candidates = [path]
    with contextlib.suppress(OSError):  # an unreadable directory: only `path` is a candidate
        candidates += sorted(p for p in path.parent.iterdir() if p.name != path.name)
    for candidate in candidates:
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (record.dev, record.ino) and _head_matches(candidate, record):
            return candidate, record.offset, record.line
    if record.offset == 0:
        return None  # the recorded file is gone, but nothing of it had been consumed
    raise CheckpointError(
        f"checkpoint {checkpoint} belongs to input {record.path} (inode {record.ino}),"
        f" which was replaced while l3tol1 was stopped; remove the checkpoint to start over"
    )


def _head_matches(path: Path, record: Recorded) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(record.head_length)
    except OSError:
        return False
    return len(head) == record.head_length and fingerprint(head) == record.head_sha256
