"""The command line (SPEC §6): options and L3TOL1_* variables into a `Settings`, then a run.

Exit status: 0 after a clean finish (end of input with --no-follow, or SIGTERM/SIGINT), 2 for bad
usage or configuration (one readable line on stderr), 1 for an unexpected failure.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import anyio

from l3tol1 import __version__
from l3tol1.config import Settings
from l3tol1.errors import ConfigError, L3Error
from l3tol1.log import configure_logging, get_logger

__all__ = ["build_parser", "main", "parse_settings"]

ENV_PREFIX = "L3TOL1_"
_LOG_LEVELS = ("debug", "info", "warning", "error")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (ConfigError) instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise ValueError(text)
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(text)
    return value


def _log_format(text: str) -> str:
    if text not in ("console", "json"):
        raise ValueError(text)
    return text


def _log_level(text: str) -> str:
    if text.lower() not in _LOG_LEVELS:
        raise ValueError(text)
    return text.lower()


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


_positive_int.__name__ = "positive integer"
_non_negative_int.__name__ = "non-negative integer"
_non_negative_float.__name__ = "non-negative number of seconds"
_port.__name__ = "TCP port (0-65535)"
_log_format.__name__ = "log format (console or json)"
_boolean.__name__ = "boolean (true/false, yes/no, 1/0, on/off)"
_log_level.__name__ = "log level (" + ", ".join(_LOG_LEVELS) + ")"


def build_parser() -> argparse.ArgumentParser:
    """The option table of SPEC §6, plus three documented extras."""
    p = _Parser(
        prog="l3tol1",
        description="Turn an L3 order feed (CSV) into L1 best bid/ask rows (CSV).",
        epilog=f"Every option can also be set as {ENV_PREFIX}<OPTION_NAME>, e.g. "
        f"{ENV_PREFIX}INPUT_FILE; a flag wins over the environment.",
    )
    add = p.add_argument
    add(
        "-i",
        "--input-file",
        type=Path,
        default=Path("l3_data.csv"),
        metavar="PATH",
        help="L3 CSV to read (default l3_data.csv)",
    )
    add(
        "-o",
        "--output-file",
        type=Path,
        default=Path("l1_data.csv"),
        metavar="PATH",
        help="L1 CSV to write (default l1_data.csv)",
    )
    add(
        "-b",
        "--batch-size",
        type=_positive_int,
        default=1000,
        metavar="INT",
        help="L1 rows per output flush (default 1000)",
    )
    add(
        "-t",
        "--max-flush-interval",
        type=_non_negative_float,
        default=2.0,
        metavar="SECS",
        help="flush a partial batch after this long (default 2)",
    )
    add(
        "--gap-timeout",
        type=_non_negative_float,
        default=2.0,
        metavar="SECS",
        help="wait this long for a missing seq (default 2)",
    )
    add(
        "--max-pending",
        type=_non_negative_int,
        default=100_000,
        metavar="INT",
        help="bound on waiting out-of-order events (default 100000)",
    )
    add(
        "--start-seq",
        type=_non_negative_int,
        default=None,
        metavar="INT",
        help="first expected seq_num (default: lowest seq of the start-up window)",
    )
    add(
        "--follow",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep tailing the file after its end (default --follow)",
    )
    add(
        "--reject-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="rejected rows, JSON lines (default <output-file>.rejects.jsonl)",
    )
    add(
        "--checkpoint",
        type=Path,
        default=None,
        metavar="PATH",
        help="resume state; enables crash-safe restart (default: none)",
    )
    add(
        "--log-format",
        type=_log_format,
        default=None,
        metavar="console|json",
        help="default: console on a terminal, json otherwise",
    )
    add(
        "--log-level",
        type=_log_level,
        default="info",
        metavar="LEVEL",
        help="debug, info, warning or error (default info)",
    )
    add(
        "--progress-interval",
        type=_non_negative_float,
        default=10.0,
        metavar="SECS",
        help="seconds between progress log lines (default 10)",
    )
    add(
        "--poll-interval",
        type=_non_negative_float,
        default=0.02,
        metavar="SECS",
        help="seconds between looks at a followed file that has not grown (default 0.02)",
    )
    add(
        "--checkpoint-interval",
        type=_non_negative_float,
        default=1.0,
        metavar="SECS",
        help="seconds between checkpoints when --checkpoint is set (default 1)",
    )
    add(
        "--metrics-port",
        type=_port,
        default=None,
        metavar="PORT",
        help="serve Prometheus /metrics and /healthz on this port (default: off)",
    )
    add(
        "--metrics-host",
        default="127.0.0.1",
        metavar="ADDR",
        help="address for --metrics-port (default 127.0.0.1; 0.0.0.0 in a container)",
    )
    add(
        "--stall-timeout",
        type=_non_negative_float,
        default=30.0,
        metavar="SECS",
        help="/healthz turns 503 when a stage holds one batch this long (default 30)",
    )
    add("--version", action="version", version=f"l3tol1 {__version__}")
    return p


def parse_settings(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    stderr_is_tty: bool = False,
) -> Settings:
    """Options from ``argv`` over ``L3TOL1_*`` variables from ``environ`` over defaults.

    :raises ConfigError: for an unknown option or a bad value, named in one sentence.
    """
    parser = build_parser()
    environ = os.environ if environ is None else environ
    _apply_environment(parser, environ)
    args = parser.parse_args(argv)
    values = vars(args)
    if values["log_format"] is None:
        values["log_format"] = "console" if stderr_is_tty else "json"
    values["interactive"] = stderr_is_tty
    return Settings(**values)


def _apply_environment(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    """Make each L3TOL1_<DEST> variable the default of its option, so a flag still wins."""
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", "version"):
            continue
        name = ENV_PREFIX + action.dest.upper()
        if name not in environ:
            continue
        convert: Callable[[str], Any] = action.type or str  # type: ignore[assignment]
        if isinstance(action, argparse.BooleanOptionalAction):
            convert = _boolean
        text = environ[name]
        try:
            value = convert(text)
        except (TypeError, ValueError):
            kind = getattr(convert, "__name__", "value")
            raise ConfigError(f"{name}={text!r} is not a valid {kind}") from None
        parser.set_defaults(**{action.dest: value})


def main(argv: Sequence[str] | None = None) -> int:
    """Run l3tol1; return the exit status."""
    try:
        settings = parse_settings(argv, stderr_is_tty=sys.stderr.isatty())
        from l3tol1.pipeline import Pipeline  # imported late: `--help` stays quick

        pipeline = Pipeline(settings)
    except ConfigError as exc:
        print(f"l3tol1: error: {exc}", file=sys.stderr)
        return exc.exit_code
    configure_logging(settings.log_format, settings.log_level)
    # Hundreds of thousands of short-lived event tuples a second would trigger a young-generation
    # collection every 700 allocations; they hold no cycles, so collect far less often, and
    # leave the start-up objects out of every scan (about 6% of a run's time).
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    log = get_logger()
    log.info("start", **settings.as_log_fields())
    try:
        anyio.run(pipeline.run, **_backend())
    except BaseException as exc:
        error = _root_error(exc)
        if isinstance(error, L3Error):
            log.error("failed", error=str(error))
            pipeline.log_summary()
            return error.exit_code
        if isinstance(error, KeyboardInterrupt):
            pipeline.log_summary()
            return 130
        log.error("crashed", error=repr(error), exc_info=error)
        return 1
    pipeline.log_summary()
    return 0


def _backend() -> dict[str, Any]:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {"backend": "asyncio"}
    return {"backend": "asyncio", "backend_options": {"use_uvloop": True}}


def _root_error(exc: BaseException) -> BaseException:
    """The error that ended the run: when one stage fails, its neighbours fail next with
    broken-stream errors, so an L3Error (or any other error) in the group is the cause."""
    leaves = []
    stack = [exc]
    while stack:
        current = stack.pop()
        if isinstance(current, BaseExceptionGroup):
            stack.extend(reversed(current.exceptions))
        else:
            leaves.append(current)
    for wanted in (
        lambda e: isinstance(e, L3Error),
        lambda e: not isinstance(e, anyio.BrokenResourceError | anyio.ClosedResourceError),
    ):
        for leaf in leaves:
            if wanted(leaf):
                return leaf
    return leaves[0]
