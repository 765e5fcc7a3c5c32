"""Crash-safe resume state (SPEC §8): what a checkpoint holds, how it is written and checked.

A checkpoint is one JSON document, written only after the output and reject rows it accounts for
are fsynced, atomically: temp file, fsync, rename, fsync of the directory. It records

- ``input``: the file the offset belongs to — its path, device and inode, and a sha256 of its
  first bytes (so inode reuse or a replaced file is detected);
- ``source``: the byte offset to resume reading from and the number of the last line read;
- ``resequencer``: what it still holds (the waiting events themselves, at most --max-pending);
- ``instrument``: the book, the last written BBO and its counters;
- ``output`` / ``rejects``: path, device, inode and size of each file at the cut;
- ``writer``: rows written and rejects by reason.

Its size follows the book and the waiting events, never the input. On start the output and
reject files are cut back to the recorded sizes, and reading continues at the offset: whatever was
written after the checkpoint is written again, identically, so nothing is lost or duplicated.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from l3tol1.errors import CheckpointError, OutputError

__all__ = [
    "FINGERPRINT_BYTES",
    "VERSION",
    "CheckpointStore",
    "ResumePlan",
    "file_record",
    "fingerprint",
    "plan",
]

VERSION = 1
# How much of the input's start identifies it; bytes already read, so they never change.
FINGERPRINT_BYTES = 4096


def fingerprint(head: bytes) -> str:
    """The sha256 (hex) of a file's first bytes."""
    return hashlib.sha256(head).hexdigest()


class CheckpointStore:
    """Reads and atomically replaces one checkpoint file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._temp = path.with_name(path.name + ".tmp")

    def load(self) -> tuple[dict[str, Any] | None, bool]:
        """The stored checkpoint (None if there is none) and whether a stale temp was removed.

        :raises CheckpointError: the file exists but is unreadable or of another version.
        """
        removed_temp = False
        if self._temp.exists():
            # A crash while writing leaves the temp file; the previous checkpoint still stands.
            self._temp.unlink()
            removed_temp = True
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None, removed_temp
        except OSError as exc:
            raise CheckpointError(f"cannot read checkpoint {self.path}: {exc.strerror}") from exc
        try:
            state = json.loads(text)
        except ValueError as exc:
            raise CheckpointError(f"checkpoint {self.path} is not valid JSON: {exc}") from exc
        if not isinstance(state, dict) or state.get("version") != VERSION:
            raise CheckpointError(
                f"checkpoint {self.path} is not a version-{VERSION} l3tol1 checkpoint"
            )
        return state, removed_temp

    def save(self, state: dict[str, Any]) -> None:
        """Replace the checkpoint atomically and durably (blocking: run it in a thread).

        :raises OutputError: the checkpoint could not be written (exit 1, like any write).
        """
        data = json.dumps({"version": VERSION, **state}, separators=(",", ":")).encode()
        try:
            fd = os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(self._temp, self.path)
            dir_fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise OutputError(f"cannot write checkpoint {self.path}: {exc.strerror}") from exc


@dataclass(frozen=True, slots=True)
class ResumePlan:
    """Where a restart picks up: which file to read first (the recorded one, possibly renamed by
    rotation), the state to restore, and the sizes to cut the output files back to."""

    input_path: Path
    state: dict[str, Any]
    output_size: int
    rejects_size: int


def plan(
    state: dict[str, Any], *, input_path: Path, output: Path, rejects: Path, checkpoint: Path
) -> ResumePlan:
    """Check that a loaded checkpoint belongs to these files and say how to resume.

    :raises CheckpointError: in one sentence, when the checkpoint belongs to another input or
        output, or the files were changed behind its back.
    """
    for key, path in (("output", output), ("rejects", rejects)):
        _check_output(state[key], path, checkpoint, key)
    return ResumePlan(
        input_path=_find_input(state["input"], input_path, checkpoint),
        state=state,
        output_size=int(state["output"]["size"]),
        rejects_size=int(state["rejects"]["size"]),
    )


def _check_output(recorded: dict[str, Any], path: Path, checkpoint: Path, what: str) -> None:
    name = "output" if what == "output" else "reject file"
    if os.path.abspath(path) != recorded["path"]:
        raise CheckpointError(
            f"checkpoint {checkpoint} belongs to {name} {recorded['path']}, not {path}"
        )
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CheckpointError(
            f"checkpoint {checkpoint} records {name} {path}, which no longer exists;"
            " remove the checkpoint to start over"
        ) from None
    if (st.st_dev, st.st_ino) != (recorded["dev"], recorded["ino"]) or st.st_size < recorded[
        "size"
    ]:
        raise CheckpointError(
            f"{name} {path} was replaced or cut since checkpoint {checkpoint} was written;"
            " remove the checkpoint to start over"
        )


def _find_input(recorded: dict[str, Any], path: Path, checkpoint: Path) -> Path:
    """The file the checkpoint's offset belongs to: ``path`` itself, or its rotated name."""
    if os.path.abspath(path) != recorded["path"]:
        raise CheckpointError(
            f"checkpoint {checkpoint} belongs to input {recorded['path']}, not {path}"
        )
    identity = (recorded["dev"], recorded["ino"])
    candidates = [path]
    directory = path.parent
    with contextlib.suppress(OSError):  # an unreadable directory: only `path` is a candidate
        candidates += sorted(p for p in directory.iterdir() if p.name != path.name)
    for candidate in candidates:
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == identity and _head_matches(candidate, recorded):
            return candidate
    raise CheckpointError(
        f"checkpoint {checkpoint} belongs to input {recorded['path']} (inode {recorded['ino']}),"
        f" which was replaced while l3tol1 was stopped; remove the checkpoint to start over"
    )


def _head_matches(path: Path, recorded: dict[str, Any]) -> bool:
    length = int(recorded["head_len"])
    try:
        with open(path, "rb") as f:
            head = f.read(length)
    except OSError:
        return False
    return len(head) == length and fingerprint(head) == recorded["head_sha256"]


def file_record(path: Path, size: int) -> dict[str, Any]:
    """How a checkpoint names an output file: real path, device, inode, size at the cut."""
    st = os.stat(path)
    return {"path": os.path.abspath(path), "dev": st.st_dev, "ino": st.st_ino, "size": size}
