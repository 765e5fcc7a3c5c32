"""Every error l3tol1 raises on purpose.

    L3Error                  base: anything this package raises deliberately
    ├── ConfigError          bad usage or configuration; the CLI exits 2 (SPEC §6)
    │   ├── InputError       the input cannot be opened or its header is unusable
    │   └── CheckpointError  the checkpoint belongs to another input/output, or is unreadable
    └── OutputError          the output or reject file cannot be written; exits 1

Messages are one sentence that names the thing (file, option, seq) so that the CLI can print
them as they are, on one line.
"""

from __future__ import annotations

__all__ = ["CheckpointError", "ConfigError", "InputError", "L3Error", "OutputError"]


class L3Error(Exception):
    """Base class of the errors l3tol1 raises on purpose."""

    exit_code = 1


class ConfigError(L3Error):
    """Bad usage or configuration (exit status 2)."""

    exit_code = 2


class InputError(ConfigError):
    """The input file is missing, unreadable, or its header lacks a required column."""


class CheckpointError(ConfigError):
    """The checkpoint is unreadable or belongs to another input or output."""


class OutputError(L3Error):
    """The output or reject file could not be written or synced (disk full, read-only...)."""
