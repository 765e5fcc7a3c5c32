"""The command line (SPEC §6): options and L3TOL1_* variables into `Settings`, then a run.

Exit status: 0 after a clean finish (end of input with --no-follow, or SIGTERM/SIGINT/SIGHUP),
2 for bad usage or configuration, 1 for an unexpected failure, 128+N when a second signal N
forces an immediate exit. Every failure ends with one line ``l3tol1: error: ...`` on stderr.

This module imports only the standard library at its top, so that the signal handlers are in
place before anything slow is imported (SPEC §8: a stop signal is never met by the default
action once l3tol1 is running).
"""

from __future__ import annotations

import os
import sys

from l3tol1.signals import StopSignals  # stdlib only: the handlers go in first

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing first
if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping, Sequence
    from typing import Any

    from l3tol1.log import SafeStream
    from l3tol1.run import Pipeline
    from l3tol1.settings import Settings
    from l3tol1.signals import Stop

__all__ = ["build_parser", "main", "parse_settings"]


def build_parser(command: str = "convert") -> argparse.ArgumentParser:
    """The parser of one command's options (the option table's). No option has a default here:
    an option that is not given is left out, so that its variable (or its default) can fill it."""
    import argparse
    from typing import NoReturn

    from l3tol1 import __version__
    from l3tol1.errors import ConfigError
    from l3tol1.options import COMMANDS, ENV_PREFIX, options_of

    class Parser(argparse.ArgumentParser):
        """argparse that reports a usage error as one line (ConfigError) instead of exiting."""

        def error(self, message: str) -> NoReturn:
            raise ConfigError(message)

    others = "\n".join(f"  {name:<9} {text}" for name, text in COMMANDS.items())
    p = Parser(
        prog="l3tol1" if command == "convert" else f"l3tol1 {command}",
        description=(
            "Turn an exchange's Level 3 order feed (L3 CSV, Databento MBO) into Level 1 rows or"
            " Databento's L1 schemas, as CSV or Parquet."
            if command == "convert"
            else COMMANDS[command].capitalize() + " (docs/scaling.md)."
        ),
        epilog=(
            (f"commands (l3tol1 COMMAND --help):\n{others}\n\n" if command == "convert" else "")
            + f"Every option can also be set as {ENV_PREFIX}<OPTION_NAME>, e.g. "
            f"{ENV_PREFIX}NATS_URL; a flag wins over the environment."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    for option in options_of(command):
        help_text = f"{option.help} (default {option.shown_default}; {option.env})"
        if option.metavar is None:
            p.add_argument(*option.flags, action=argparse.BooleanOptionalAction, help=help_text)
        elif option.repeat:  # each value is a tuple: the flags' values add up
            p.add_argument(
                *option.flags,
                type=option.parse,
                action="extend",
                metavar=option.metavar,
                help=help_text,
            )
        else:
            p.add_argument(*option.flags, type=option.parse, metavar=option.metavar, help=help_text)
    p.add_argument("--version", action="version", version=f"l3tol1 {__version__}")
    return p


def check_flags(argv: Sequence[str], command: str) -> None:
    """Refuse, naming it, a flag that ``command`` does not use (another command's, or a
    misspelt one: with the closest of the command's flags), before argparse sees the line.

    :raises ConfigError: in one sentence.
    """
    from l3tol1.errors import ConfigError
    from l3tol1.options import COMMANDS, OPTIONS, options_of

    mine = {flag for option in options_of(command) for flag in _flags_of(option)}
    mine |= {"-h", "--help", "--version"}
    theirs = {flag: option for option in OPTIONS for flag in _flags_of(option)}
    name = "l3tol1" if command == "convert" else f"l3tol1 {command}"
    for token in argv:
        if token == "--":
            return
        if not token.startswith("-") or token == "-" or token[1:2].isdigit():
            continue  # a value (stdin's "-", a negative number)
        flag = token.split("=", 1)[0]
        if flag in mine or (len(flag) > 2 and flag[1] != "-"):  # -ifile: argparse's to read
            continue
        option = theirs.get(flag)
        if option is not None:
            users = ", ".join(c for c in COMMANDS if c in option.commands)
            raise ConfigError(f"{flag} is not an option of {command} (it is of {users})")
        import difflib  # only to name the closest flag: a run never needs it

        close = difflib.get_close_matches(flag, sorted(mine), n=1)
        hint = f"; did you mean {close[0]}?" if close else f"; see {name} --help"
        raise ConfigError(f"unknown option {flag}{hint}")


def _flags_of(option: Any) -> list[str]:
    flags = list(option.flags)
    if option.metavar is None:  # --follow / --no-follow
        flags += ["--no-" + f.removeprefix("--") for f in option.flags if f.startswith("--")]
    return flags


def command_of(args: list[str]) -> str:
    """The command a command line names first (and takes it off ``args``): `convert` when its
    first word is an option (``l3tol1 -i ...``) or there is none.

    :raises ConfigError: the first word names no command (with the closest one).
    """
    from l3tol1.errors import ConfigError
    from l3tol1.options import COMMANDS

    if not args or args[0].startswith("-"):
        return "convert"
    word = args.pop(0)
    if word in COMMANDS:
        return word
    import difflib  # only to name the closest command

    close = difflib.get_close_matches(word, list(COMMANDS), n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise ConfigError(f"unknown command {word!r}{hint} (commands: {', '.join(COMMANDS)})")


def parse_settings(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    stderr_is_tty: bool = False,
    command: str = "convert",
) -> Settings:
    """``command``'s options from ``argv``, else their ``L3TOL1_*`` variable from ``environ``,
    else defaults (an option the command does not use keeps its default, whatever its
    variable says: one environment can serve every role).

    A variable is read only when its flag is absent (a bad value that a flag overrides does no
    harm), and an empty one counts as unset. A variable that names no option is reported in
    ``Settings.warnings`` with the closest option's variable.

    :raises ConfigError: for an unknown option or a bad value, named in one sentence.
    """
    from l3tol1.errors import ConfigError
    from l3tol1.options import ENV_PREFIX, OPTIONS, OTHER_VARIABLES
    from l3tol1.settings import Settings

    environ = os.environ if environ is None else environ
    argv = list(sys.argv[1:] if argv is None else argv)
    check_flags(argv, command)
    given = vars(build_parser(command).parse_args(argv))
    values: dict[str, Any] = {}
    for option in OPTIONS:
        if command not in option.commands:
            values[option.dest] = option.default
            continue
        if option.dest in given:
            value = given[option.dest]
            if option.repeat:  # several flags: one tuple, each value once, in order
                value = tuple(dict.fromkeys(value))
            values[option.dest] = value
            continue
        text = environ.get(option.env, "")
        if not text:
            values[option.dest] = option.default
            continue
        try:
            values[option.dest] = option.parse(text)
        except (TypeError, ValueError):
            kind = getattr(option.parse, "__name__", "value")
            raise ConfigError(f"{option.env}={text!r} is not a valid {kind}") from None
    known = {option.env for option in OPTIONS} | OTHER_VARIABLES
    warnings = []
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and name not in known:
            import difflib  # only to name the closest variable

            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            warnings.append(f"{name} is not an l3tol1 variable and is ignored{hint}")
    if values["log_format"] is None:
        values["log_format"] = "console" if stderr_is_tty else "json"
    schema_given = "schema" in given or bool(environ.get(ENV_PREFIX + "SCHEMA", ""))
    return Settings(
        **values,
        interactive=stderr_is_tty,
        warnings=tuple(warnings),
        schema_given=schema_given,
        command=command,
    )


# The roles of SPEC §13, given as the first word: `l3tol1 publish ...`.
ROLES = ("publish", "work", "collect")


def main(argv: Sequence[str] | None = None) -> int:
    """Run l3tol1; return the exit status."""
    stops = StopSignals()
    stops.install()
    from l3tol1.errors import ConfigError
    from l3tol1.log import SafeStream

    args = list(sys.argv[1:] if argv is None else argv)
    stderr = SafeStream(sys.stderr)  # a reader that goes away must never cost data
    try:
        command = command_of(args)
        if command == "plot":
            from l3tol1.plot import main as plot

            return plot(args, prog="l3tol1 plot")
        role = command if command in ROLES else None
        settings = parse_settings(args, stderr_is_tty=sys.stderr.isatty(), command=command)
        from l3tol1.log import configure_logging

        configure_logging(settings.log_format, settings.log_level, stderr)
        from l3tol1.log import get_logger
        from l3tol1.notify import Notifier
        from l3tol1.signals import Stop

        # From here on the event loop's watcher handles the signals (one for every face), and
        # tells systemd how the run goes (NOTIFY_SOCKET; nothing without it).
        stop = Stop(get_logger(), stops.received, Notifier.from_environ(os.environ))
        if role in ("work", "collect"):
            return _run_role(role, settings, stderr, stop)
        if role == "publish":
            from l3tol1.jetstream.publish import publish_pipeline

            pipeline = publish_pipeline(settings, stop=stop, stderr=stderr)
        else:
            from l3tol1.run import file_job

            pipeline = file_job(settings, stop=stop, stderr=stderr)
    except ConfigError as exc:
        stderr.line(f"l3tol1: error: {exc}")
        return exc.exit_code
    # Hundreds of thousands of short-lived event tuples a second would trigger a young-generation
    # collection every 700 allocations; they hold no cycles, so collect far less often, and
    # leave the start-up objects out of every scan (about 6% of a run's time).
    import gc

    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    return _run(pipeline, stderr)


def _run(pipeline: Pipeline, stderr: SafeStream) -> int:
    """Run the pipeline and decide the exit status; every failure ends with one error line."""
    import anyio

    from l3tol1.errors import ConfigError, L3Error

    try:
        anyio.run(pipeline.run, **_backend())
    except BaseException as exc:
        error = _root_error(exc)
        if isinstance(error, KeyboardInterrupt):
            pipeline.log_summary()
            return 130
        if isinstance(error, ConfigError) and not pipeline.started:
            # Found before the run began (the input's header, say): nothing was touched.
            stderr.line(f"l3tol1: error: {error}")
            return error.exit_code
        if isinstance(error, L3Error):
            pipeline.log.error("failed", error=str(error))
            message, status = str(error), error.exit_code
        else:
            pipeline.log.error("crashed", error=repr(error), exc_info=error)
            message, status = f"unexpected failure: {error!r}", 1
        pipeline.log_summary()
        stderr.line(f"l3tol1: error: {message}")
        return status
    pipeline.log_summary()
    return 0


def _run_role(role: str, settings: Settings, stderr: SafeStream, stop: Stop) -> int:
    """Run `l3tol1 work` or `l3tol1 collect` (SPEC §13) to its end or a stop signal (one that
    came already, while starting, counts: the role stops as soon as it listens)."""
    import anyio

    from l3tol1.errors import L3Error
    from l3tol1.log import get_logger

    runner: Any
    if role == "work":
        from l3tol1.jetstream.work import Worker

        runner = Worker(settings, stop=stop)
    else:
        from l3tol1.jetstream.collect import Collector

        runner = Collector(settings, stop=stop)
    log = get_logger()
    try:
        anyio.run(runner.run, **_backend())
    except BaseException as exc:
        error = _root_error(exc)
        if isinstance(error, L3Error):
            log.error("failed", error=str(error))
            stderr.line(f"l3tol1: error: {error}")
            return error.exit_code
        log.error("crashed", error=repr(error), exc_info=error)
        stderr.line(f"l3tol1: error: unexpected failure: {error!r}")
        return 1
    log.info("summary", role=role, **runner.summary())
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
    import anyio

    from l3tol1.errors import L3Error

    leaves = []
    stack = [exc]
    while stack:
        current = stack.pop()
        if isinstance(current, BaseExceptionGroup):
            stack.extend(reversed(current.exceptions))
        else:
            leaves.append(current)
    broken = (anyio.BrokenResourceError, anyio.ClosedResourceError)
    for leaf in leaves:
        if isinstance(leaf, L3Error):
            return leaf
    for leaf in leaves:
        if not isinstance(leaf, broken):
            return leaf
    return leaves[0]
