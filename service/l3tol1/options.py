"""The one option table (SPEC §6): every option's flags, value rule, default, variable and help.

Everything else is derived from it: the argparse parser, the ``L3TOL1_*`` variables, the
settings, and docs/commands.md's option table (a test keeps that one in step). A value rule is a
function from text to value that raises ``ValueError`` with a short reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from l3tol1.core.numbers import MAX_SEQ

__all__ = [
    "COMMANDS",
    "ENV_PREFIX",
    "OPTIONS",
    "Option",
    "format_instruments",
    "markdown_table",
    "options_of",
]

ENV_PREFIX = "L3TOL1_"
LOG_LEVELS = ("debug", "info", "warning", "error")
Rule = TypeVar("Rule", bound=Callable[[str], Any])


@dataclass(frozen=True, slots=True)
class Option:
    """One option of the command line and its environment variable."""

    flags: tuple[str, ...]
    parse: Callable[[str], Any]
    default: Any
    help: str
    metavar: str | None = None  # None for an on/off option (--x / --no-x)
    default_text: str | None = None  # how the default reads in help and docs
    extra: bool = False  # not in SPEC §6: documented in docs/commands.md
    repeat: bool = False  # may be given several times: the values (tuples) add up
    commands: frozenset[str] = frozenset()  # the commands that use it (`COMMANDS`)

    @property
    def dest(self) -> str:
        """The settings field: ``--max-pending`` -> ``max_pending``."""
        return self.flags[-1].removeprefix("--").replace("-", "_")

    @property
    def env(self) -> str:
        """The environment variable: ``L3TOL1_MAX_PENDING``."""
        return ENV_PREFIX + self.dest.upper()

    @property
    def shown_default(self) -> str:
        """The default as help and docs show it."""
        if self.default_text is not None:
            return self.default_text
        return str(self.default)


# -- value rules ---------------------------------------------------------------------------------


def _rule(name: str) -> Callable[[Rule], Rule]:
    """Name a value rule as messages say it: "is not a valid positive integer"."""

    def name_it(rule: Rule) -> Rule:
        rule.__name__ = name
        return rule

    return name_it


@_rule("path")
def path(text: str) -> Path:
    if not text:
        raise ValueError("empty")
    return Path(text)


@_rule("file path")
def file_path(text: str) -> Path:
    value = path(text)
    if value.name in ("", ".", ".."):
        raise ValueError("names a directory")
    return value


def _integer(text: str, lo: int, hi: int) -> int:
    text = text.strip()
    if not (text.isdigit() and text.isascii()) or len(text) > 20 or not lo <= int(text) <= hi:
        raise ValueError(text)
    return int(text)


@_rule("positive integer")
def positive_int(text: str) -> int:
    return _integer(text, 1, 2**63 - 1)


@_rule("non-negative integer")
def natural(text: str) -> int:
    return _integer(text, 0, 2**63 - 1)


@_rule("seq_num (0 to 2^64-1)")
def seq(text: str) -> int:
    return _integer(text, 0, MAX_SEQ)


@_rule("TCP port (0-65535)")
def port(text: str) -> int:
    return _integer(text, 0, 65535)


def _seconds(text: str, lo: float) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= lo):
        raise ValueError(text)
    return value


@_rule("non-negative number of seconds")
def seconds(text: str) -> float:
    return _seconds(text, 0.0)


@_rule("number of seconds, at least 0.001")
def poll_seconds(text: str) -> float:
    return _seconds(text, 0.001)


@_rule("positive number of seconds")
def positive_seconds(text: str) -> float:
    value = _seconds(text, 0.0)
    if value == 0:
        raise ValueError(text)
    return value


@_rule("boolean (true/false, yes/no, 1/0, on/off)")
def boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


@_rule("log format (console or json)")
def log_format(text: str) -> str:
    if text.lower() not in ("console", "json"):
        raise ValueError(text)
    return text.lower()


@_rule("log level (" + ", ".join(LOG_LEVELS) + ")")
def log_level(text: str) -> str:
    if text.lower() not in LOG_LEVELS:
        raise ValueError(text)
    return text.lower()


@_rule("column name")
def column(text: str) -> str:
    if not text.strip():
        raise ValueError("empty")
    return text


@_rule("comma-separated list of instruments")
def instrument_list(text: str) -> tuple[str, ...]:
    """Instrument names as the fields of one CSV line: ``ES, NQ`` is ES and NQ (whitespace
    around a name that is not quoted is dropped, empty fields are skipped), ``"ES,H1"`` one name
    holding a comma (``""`` in quotes is a quote). Names are otherwise kept as they are: opaque
    and case-sensitive."""
    names: list[str] = []
    rest = text
    while True:
        rest = rest.lstrip()
        if rest.startswith('"'):
            name, rest = _quoted(rest)
            if not name:
                raise ValueError("an empty name")
            rest = rest.lstrip()
            if rest and not rest.startswith(","):
                raise ValueError("text after a closing quote")
        else:
            name, comma, after = rest.partition(",")
            if '"' in name:
                raise ValueError("a quote inside a name that is not quoted")
            name, rest = name.strip(), comma + after
        if name:
            names.append(name)
        if not rest:
            break
        rest = rest[1:]  # the comma
    if not names:
        raise ValueError("empty")
    return tuple(dict.fromkeys(names))


def _quoted(text: str) -> tuple[str, str]:
    """The quoted field at the start of ``text`` (unescaped), and what follows it."""
    out = []
    i = 1
    while True:
        end = text.find('"', i)
        if end < 0:
            raise ValueError("a quote that is not closed")
        out.append(text[i:end])
        if text.startswith('"', end + 1):  # "" is a quote inside the name
            out.append('"')
            i = end + 2
            continue
        return "".join(out), text[end + 1 :]


def format_instruments(names: tuple[str, ...]) -> str:
    """``names`` as `instrument_list` reads them back: quoted where a name needs it."""
    fields = []
    for name in names:
        needs_quotes = any(c in name for c in ',"') or name != name.strip()
        fields.append('"' + name.replace('"', '""') + '"' if needs_quotes else name)
    return ",".join(fields)


@_rule("input format (csv or dbn)")
def input_format(text: str) -> str:
    if text.lower() not in ("csv", "dbn"):
        raise ValueError(text)
    return text.lower()


@_rule("output format (csv or parquet)")
def output_format(text: str) -> str:
    if text.lower() not in ("csv", "parquet"):
        raise ValueError(text)
    return text.lower()


@_rule("schema (l1, mbp-1, mbp-10, tbbo, bbo-1s or bbo-1m)")
def schema(text: str) -> str:
    from l3tol1.core.schemas import SCHEMAS

    if text.lower() not in SCHEMAS:
        raise ValueError(text)
    return text.lower()


@_rule("core (auto, compiled or python)")
def core(text: str) -> str:
    if text.lower() not in ("auto", "compiled", "python"):
        raise ValueError(text)
    return text.lower()


@_rule("host name or address")
def host(text: str) -> str:
    if not text.strip():
        raise ValueError("empty")
    return text


@_rule("list of nats:// URLs")
def nats_urls(text: str) -> str:
    """Comma-separated nats:// or tls:// URLs, each with a host and (if any) a port number:
    what nats-py can use (it would report a bad one only when connecting)."""
    from urllib.parse import urlsplit

    urls = [u.strip() for u in text.split(",")]
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("nats", "tls") or parts.hostname in (None, "", "none"):
            raise ValueError(text)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a port number)
    return ",".join(urls)


@_rule("name (letters, digits, _ and -)")
def subject_token(text: str) -> str:
    if (
        not text
        or len(text) > 64
        or not all(c.isascii() and (c.isalnum() or c in "_-") for c in text)
    ):
        raise ValueError(text)
    return text


@_rule("partition count (1 to 1024)")
def partitions(text: str) -> int:
    return _integer(text, 1, 1024)


# -- the commands ------------------------------------------------------------------------------

# Each command, with what it does (its help). `l3tol1 ...` without one is `convert`.
COMMANDS = {
    "convert": "the file job: an L3 input into L1 rows (or a schema's), CSV or Parquet",
    "publish": "read an L3 input, resequence it, publish it to a JetStream feed",
    "work": "apply a feed's partitions to the books; publish their rows",
    "collect": "write a feed's rows to a CSV file or a Parquet dataset",
    "plot": "draw an output's best bid and ask (one instrument) as a PNG",
}
# Which commands use an option, by the side of the run it belongs to.
_IN = frozenset({"convert", "publish"})  # reading and ordering the input
_OUT = frozenset({"convert", "collect"})  # writing rows
_NATS = frozenset({"publish", "work", "collect"})  # the feed on JetStream
_ALL = _IN | _OUT | _NATS


# -- the table -----------------------------------------------------------------------------------

OPTIONS: tuple[Option, ...] = (
    Option(("-i", "--input-file"), path, Path("l3_data.csv"),
           "L3 input to read: CSV, plain or compressed; - for standard input", "PATH",
           commands=_IN),
    Option(("--input-format",), input_format, None,
           "what the input is: L3 CSV (or Databento's MBO CSV), or Databento DBN", "csv|dbn",
           "dbn if the data starts with DBN, else csv",
           commands=_IN),
    Option(("-o", "--output-file"), file_path, Path("l1_data.csv"),
           "L1 output: a CSV file, or a Parquet dataset directory", "PATH",
           commands=_OUT),
    Option(("--output-format",), output_format, None,
           "what to write", "csv|parquet", "parquet if the output name ends in .parquet, else csv",
           commands=_OUT),
    Option(("--schema",), schema, "l1",
           "the rows to write: l1 (best bid and ask when they change), or Databento's mbp-1,"
           " mbp-10, tbbo, bbo-1s, bbo-1m (see docs/schemas.md)",
           "l1|mbp-1|mbp-10|tbbo|bbo-1s|bbo-1m",
           commands=_ALL),
    Option(("-b", "--batch-size"), positive_int, 1000, "L1 rows per output flush", "INT",
           commands=_OUT | frozenset({"publish"})),
    Option(("-t", "--max-flush-interval"), seconds, 2.0,
           "flush a partial batch after this long", "SECS", "2",
           commands=_OUT | frozenset({"publish"})),
    Option(("--gap-timeout",), seconds, 2.0,
           "wait this long for a missing seq (when following)", "SECS", "2",
           commands=_IN),
    Option(("--max-pending",), natural, 100_000,
           "bound on waiting out-of-order events", "INT",
           commands=_IN),
    Option(("--start-seq",), seq, None,
           "first expected seq_num", "INT", "lowest seq of the start-up window",
           commands=_IN),
    Option(("--follow",), boolean, None,
           "keep tailing the file after its end (compressed and piped input: read to the end)",
           None, "--follow",
           commands=_IN | frozenset({"collect"})),
    Option(("--reject-file",), file_path, None,
           "rejected rows, JSON lines", "PATH",
           "<output-file>.rejects.jsonl; publish: <checkpoint>.rejects.jsonl, else required",
           commands=_IN),
    Option(("--checkpoint",), file_path, None,
           "resume state; enables crash-safe restart", "PATH", "none",
           commands=_IN | frozenset({"collect"})),
    Option(("--log-format",), log_format, None,
           "log rendering on stderr", "console|json", "console on a terminal, else json",
           commands=_ALL),
    Option(("--log-level",), log_level, "info",
           "debug, info, warning or error", "LEVEL",
           commands=_ALL),
    Option(("--instrument-column",), column, None,
           "the column naming each row's instrument", "NAME",
           "instrument or symbol, if present", extra=True,
           commands=_IN),
    Option(("--instruments",), instrument_list, None,
           "keep only these instruments' books and rows; names as CSV fields (spaces around a"
           ' name dropped, "ES,H1" quoted holds a comma); may be repeated', "A,B,...", "all",
           extra=True, repeat=True,
           commands=_IN),
    Option(("--part-rows",), positive_int, 1_000_000,
           "Parquet: rows per part file", "INT", "1000000",
           commands=_OUT),
    Option(("--part-interval",), positive_seconds, 60.0,
           "Parquet, when following: close a part this long after its first row", "SECS", "60",
           commands=_OUT),
    Option(("--core",), core, "auto",
           "compiled (C) or python (the reference) core; auto: compiled if it was built",
           "auto|compiled|python", extra=True,
           commands=_ALL),
    Option(("--progress-interval",), seconds, 10.0,
           "seconds between progress log lines; 0 for none", "SECS", "10", extra=True,
           commands=_IN),
    Option(("--poll-interval",), poll_seconds, 0.02,
           "look at a followed file this often when it has not grown", "SECS", extra=True,
           commands=_IN),
    Option(("--checkpoint-interval",), seconds, 1.0,
           "least seconds between checkpoints while data flows", "SECS", "1", extra=True,
           commands=_IN | frozenset({"work"})),
    Option(("--metrics-port",), port, None,
           "serve /metrics and /healthz on this port; 0 picks a free one", "PORT", "off",
           extra=True,
           commands=_ALL),
    Option(("--metrics-host",), host, "127.0.0.1",
           "address for the metrics port (0.0.0.0 in a container)", "ADDR", extra=True,
           commands=_ALL),
    Option(("--stall-timeout",), positive_seconds, 30.0,
           "/healthz turns 503 when a stage holds one batch this long", "SECS", "30",
           extra=True,
           commands=_IN),
    Option(("--nats-url",), nats_urls, "nats://127.0.0.1:4222",
           "publish, work, collect: the NATS servers, comma-separated", "URL[,URL...]",
           extra=True,
           commands=_NATS),
    Option(("--feed",), subject_token, "default",
           "publish, work, collect: the feed's name in subjects and streams", "NAME", extra=True,
           commands=_NATS),
    Option(("--subject-prefix",), subject_token, "l3tol1",
           "publish, work, collect: the first token of every subject", "PREFIX", extra=True,
           commands=_NATS),
    Option(("--partitions",), partitions, 16,
           "publish: partitions of the feed (fixed for its life)", "P", extra=True,
           commands=frozenset({"publish"})),
)  # fmt: skip

# Variables that are not options but that l3tol1 reads (so they are never "misspelt").
OTHER_VARIABLES = frozenset({ENV_PREFIX + "REQUIRE_COMPILED", ENV_PREFIX + "NO_COMPILE"})


def options_of(command: str) -> tuple[Option, ...]:
    """The options a command uses, in the table's order."""
    return tuple(option for option in OPTIONS if command in option.commands)


def markdown_table() -> str:
    """The option table of docs/commands.md (the README shows some of its rows)."""
    lines = [
        "| option | env variable | default | meaning |",
        "|---|---|---|---|",
    ]
    for option in OPTIONS:
        if option.metavar is None:
            name = f"{option.flags[-1]} / --no-{option.flags[-1].removeprefix('--')}"
        else:
            name = f"{', '.join(option.flags)} {option.metavar}".replace("|", "\\|")
        meaning = option.help + (" (extra)" if option.extra else "")
        default = option.shown_default
        lines.append(f"| `{name}` | `{option.env}` | `{default}` | {meaning} |")
    return "\n".join(lines) + "\n"
