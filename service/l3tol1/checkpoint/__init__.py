"""Crash-safe resume state (SPEC §8).

model.py   what a checkpoint holds: `Checkpoint` and its pieces' owners
codec.py   the bytes on disk (versioned, zstd-compressed JSON), read back whole
store.py   the file: loaded at start, replaced atomically at each cut, locked
"""

from l3tol1.checkpoint.codec import VERSION, decode, encode
from l3tol1.checkpoint.model import Checkpoint, InputRecord, RunOptions
from l3tol1.checkpoint.store import CheckpointStore

__all__ = [
    "VERSION",
    "Checkpoint",
    "CheckpointStore",
    "InputRecord",
    "RunOptions",
    "decode",
    "encode",
]
