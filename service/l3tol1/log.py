"""Logging, configured in exactly one function: console on a terminal, JSON lines otherwise.

Log lines go through `SafeStream`: when stderr's reader goes away (``l3tol1 ... 2>&1 | head``,
a restarted log shipper), logging goes quiet instead of failing, so that a log line can never
cost a row of output.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import MutableMapping
from enum import Enum
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    import structlog

__all__ = ["SafeStream", "configure_logging", "get_logger", "plain_enums"]


class SafeStream:
    """A text stream whose write errors (EPIPE, EIO...) end its output instead of raising."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        """Write ``text`` and flush; after the first failure, write nothing more."""
        if not self.broken:
            try:
                self._stream.write(text)
                self._stream.flush()
            except (OSError, ValueError):  # ValueError: the stream was closed
                self.broken = True
        return len(text)

    def flush(self) -> None:
        """Nothing to do: every write flushes."""

    def line(self, text: str) -> None:
        """Write one line."""
        self.write(text + "\n")

    def isatty(self) -> bool:
        """Whether the stream is a terminal (rich asks)."""
        try:
            return not self.broken and self._stream.isatty()
        except (OSError, ValueError):
            return False

    def fileno(self) -> int:
        """The stream's descriptor (rich asks)."""
        return self._stream.fileno()


def _import_structlog(console: bool) -> None:
    """Import structlog; for JSON logs, without letting it import rich.

    structlog's `dev` module imports rich's console and traceback (about 55 ms, a third of a
    short run's start-up) only to render exceptions on a console. JSON logs never use them: the
    import sees rich as absent, and rich stays importable afterwards for the progress bar.
    """
    if console or "structlog" in sys.modules or "rich" in sys.modules:
        importlib.import_module("structlog")
        return
    sys.modules["rich"] = None  # type: ignore[assignment]  # makes `import rich` fail
    try:
        importlib.import_module("structlog")
    finally:
        del sys.modules["rich"]


def _plain(value: Any) -> Any:
    """``value`` with every enum in it (keys of dicts too) as its value."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {_plain(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_plain(item) for item in value)
    return value


def plain_enums(logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
    """A structlog processor: enums as their values (``add_of_live_order``, not
    ``<Anomaly.ADD_LIVE: 'add_of_live_order'>``), in console lines as in JSON ones; the anomaly
    and reject counts of the summary are dicts keyed by enums."""
    return {key: _plain(value) for key, value in event.items()}


def configure_logging(fmt: str, level: str, stream: SafeStream | TextIO) -> None:
    """Send structlog events to ``stream`` as ``fmt`` ("console" or "json")."""
    import logging

    _import_structlog(console=fmt == "console")
    import structlog

    renderer: structlog.typing.Processor
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            plain_enums,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(stream),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )


def get_logger() -> structlog.typing.FilteringBoundLogger:
    """The package's logger."""
    import structlog

    return structlog.get_logger("l3tol1")  # type: ignore[no-any-return]
