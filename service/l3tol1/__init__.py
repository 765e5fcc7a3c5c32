"""l3tol1: turn an exchange's Level 3 order feed into exact Level 1 (best bid/ask) rows.

As a library (SPEC §15; docs/library.md): `convert` (the file job, to a file), `read` (the rows
as a `pyarrow.Table`), `iter_batches` (the rows in bounded memory), `Summary` (what a run did),
and `Error` with its subclasses, raised with the CLI's messages. They are loaded on first use, so
that the command line does not pay for them.
"""

from typing import TYPE_CHECKING, Any

from l3tol1.errors import CheckpointError, ConfigError, InputError, OutputError
from l3tol1.errors import L3Error as Error

if TYPE_CHECKING:
    from l3tol1.api import Summary, convert, iter_batches, read

__all__ = [
    "CheckpointError",
    "ConfigError",
    "Error",
    "InputError",
    "OutputError",
    "Summary",
    "__version__",
    "convert",
    "iter_batches",
    "read",
]

__version__ = "0.1.0"

_API = frozenset({"Summary", "convert", "iter_batches", "read"})


def __getattr__(name: str) -> Any:
    if name in _API:
        from l3tol1 import api

        return getattr(api, name)
    raise AttributeError(f"module 'l3tol1' has no attribute {name!r}")
