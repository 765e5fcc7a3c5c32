"""Checks before anything is touched (SPEC §6, §8, §10): the paths, the input's kind, whether a
checkpoint can work. A configuration error found here leaves every file as it was.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from l3tol1.errors import ConfigError, InputError
from l3tol1.settings import Settings
from l3tol1.sources.codecs import MAGIC_BYTES, codec_of
from l3tol1.sources.dbn import DBN_MAGIC
from l3tol1.sources.stream import STDIN, is_stream

__all__ = ["check_checkpointable", "check_paths", "input_kind"]


def input_kind(settings: Settings) -> tuple[str, bool]:
    """How the input is read: ("file", follow) for a regular file, followed or read to its end;
    ("stream", False) for what is read once (stdin, a pipe or device, a compressed file, a DBN
    file).

    :raises InputError: the input is missing (and not to be waited for) or a directory.
    :raises ConfigError: ``--follow`` with an input that cannot be followed.
    """
    path = settings.input_file
    kind = _kind(path, settings.follow, settings.input_format)
    follow = kind == "file" and settings.follow is not False
    if settings.follow and not follow:
        raise ConfigError(
            f"--follow cannot follow {describe(path)}: it is read to its end; leave --follow out"
        )
    return kind, follow


def _kind(path: Path, follow: bool | None, input_format: str | None) -> str:
    if path == STDIN or is_stream(path) or input_format == "dbn":
        return "stream"
    try:
        with open(path, "rb") as file:
            head = file.read(MAGIC_BYTES)
    except FileNotFoundError as exc:
        if follow is False:
            raise InputError(f"input file {path} does not exist") from exc
        return "file"  # waited for
    except IsADirectoryError as exc:
        raise InputError(f"input {path} is a directory, not a file") from exc
    except OSError as exc:
        raise InputError(f"cannot read input {path}: {exc.strerror}") from exc
    # --input-format csv reads a file that starts like DBN as CSV; compressed CSV is still
    # compressed (and read to its end).
    dbn = head.startswith(DBN_MAGIC) and input_format != "csv"
    return "stream" if codec_of(head) is not None or dbn else "file"


def describe(path: Path) -> str:
    """An input read once, as messages name it."""
    if path == STDIN:
        return "standard input"
    what = "a compressed or DBN file" if os.path.isfile(path) else "a pipe or device"
    return f"{path} ({what})"


def check_checkpointable(settings: Settings, kind: str, *, rows: bool) -> None:
    """A checkpoint needs an input that can be read again and outputs that can be cut back
    (the L1 output only where rows are written: `l3tol1 publish` writes none).

    :raises ConfigError: naming the input or output that cannot be.
    """
    if kind == "stream" and not os.path.isfile(settings.input_file):
        raise ConfigError(
            f"--checkpoint needs an input that can be read again, and"
            f" {describe(settings.input_file)} cannot"
        )
    outputs = [("--reject-file", settings.reject_path)]
    if rows and not settings.parquet:  # a dataset directory's parts are checked by the sink
        outputs.insert(0, ("--output-file", settings.output_file))
    for option, path in outputs:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            continue
        if not stat.S_ISREG(mode):
            raise ConfigError(
                f"--checkpoint needs regular output files, and {option} {path} is not one"
            )


def check_paths(settings: Settings, *, rows: bool) -> None:
    """Refuse two names for one file: the input must never be written, and no two outputs may
    share a file. Files are compared by identity (device and inode: a hard link or a symlink is
    the same file), names that do not exist yet by their resolved path. Pipes and devices may
    take several outputs (``/dev/null``). ``rows``: the run writes an L1 output.

    :raises ConfigError: naming both options.
    """
    named: dict[str, Path] = {}
    if settings.input_file != STDIN:
        named["--input-file"] = settings.input_file
    if rows:
        named["--output-file"] = settings.output_file
    named["--reject-file"] = settings.reject_path
    if settings.checkpoint is not None:
        named["--checkpoint"] = settings.checkpoint
    seen: dict[object, str] = {}
    for option, path in named.items():
        try:
            st = os.stat(path)
        except OSError:
            key: object = os.path.realpath(path)
        else:
            directory_wanted = option == "--output-file" and settings.parquet
            if option != "--input-file" and not stat.S_ISREG(st.st_mode):
                if stat.S_ISDIR(st.st_mode) and not directory_wanted:
                    raise ConfigError(f"{option} {path} is a directory")
                if not stat.S_ISDIR(st.st_mode):
                    continue
            key = (st.st_dev, st.st_ino)
        if key in seen:
            raise ConfigError(f"{option} and {seen[key]} name the same file {path}")
        seen[key] = option
