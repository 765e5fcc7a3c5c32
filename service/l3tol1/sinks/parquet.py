"""The Parquet output (SPEC §11): a dataset directory of complete, zstd-compressed part files.

A part is written under a temporary name (``.part-NNNNNN.parquet.tmp``) a row group at a time,
so memory holds at most one row group of quotes; when it is closed it is fsynced and renamed to
``part-NNNNNN.parquet``, so every visible part is complete. A part closes when it holds
``--part-rows`` rows, after ``--part-interval`` seconds when following, and at the end.

With a checkpoint, parts close only at checkpoint cuts, and in this order: the temporary file is
fsynced, the checkpoint that names the part is saved, then the part is renamed. A restart keeps
exactly the parts its checkpoint names (finishing a rename the crash cut short) and deletes any
other part or temporary file, so no part is ever duplicated, missing or partial, and a visible
part never disappears.

A dataset is never left without a part (issue 17: readers fail on a directory of none, or see
no columns): when a run's last part closes and the dataset has none, an empty part
``part-000000.parquet`` is written, with the columns of the rows' layout. It is a placeholder:
a checkpoint names it (with 0 rows), and the first real part, of this run or of a resumed one,
is written as part 0 and replaces it, so part names and rows are an uninterrupted run's.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from l3tol1.core.plain import PlainReader, natural
from l3tol1.core.records import Quote
from l3tol1.core.schemas import Schema
from l3tol1.errors import CheckpointError, ConfigError, OutputError
from l3tol1.sinks.arrow import ArrowValues, L1Columns, RowColumns, l1_schema, rows_schema
from l3tol1.sinks.files import take_lock

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["ParquetSink", "ParquetState"]

ROW_GROUP_ROWS = 65_536
_PART = re.compile(r"(?:part-(\d{6})\.parquet|\.part-(\d{6})\.parquet\.tmp)")
_LOCK_NAME = ".l3tol1.lock"


def part_name(index: int) -> str:
    """The visible name of part ``index``."""
    return f"part-{index:06d}.parquet"


def temp_name(index: int) -> str:
    """The name part ``index`` has while it is written."""
    return f".part-{index:06d}.parquet.tmp"


@dataclass(frozen=True, slots=True)
class ParquetState:
    """A Parquet dataset at a checkpoint: its directory, and the parts it holds."""

    path: str
    dev: int
    ino: int
    parts: tuple[tuple[str, int], ...]  # (name, rows) of each part, in order; 0 rows: the
    # placeholder of an empty dataset, the only part
    instrument: bool | None  # whether the rows have an instrument column (None: no row yet)
    nanoseconds: bool | None

    kind = "parquet"

    @property
    def rows(self) -> int:
        """Rows in every part."""
        return sum(rows for _, rows in self.parts)

    def to_plain(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "path": self.path,
            "dev": self.dev,
            "ino": self.ino,
            "parts": self.parts,
            "instrument": self.instrument,
            "nanoseconds": self.nanoseconds,
        }

    @classmethod
    def from_plain(cls, obj: Any, where: str, read: PlainReader) -> ParquetState:
        """The state `to_plain` gave, checked: the parts must be part 0, 1... in order.

        :raises PlainDataError: a value is missing or of the wrong type.
        """
        parts = read.items(
            obj,
            "parts",
            where,
            lambda p: (
                isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) and natural(p[1])
            ),
        )
        if [name for name, _ in parts] != [part_name(i) for i in range(len(parts))]:
            read.fail(f"{where}.parts", f"not the parts {part_name(0)}... in order")
        return cls(
            path=read.string(obj, "path", where),
            dev=read.integer(obj, "dev", where),
            ino=read.integer(obj, "ino", where),
            parts=tuple((name, rows) for name, rows in parts),
            instrument=read.boolean(obj, "instrument", where, null=True),
            nanoseconds=read.boolean(obj, "nanoseconds", where, null=True),
        )


class ParquetSink:
    """Writes L1 quotes as a Parquet dataset (a directory of part files).

    :param part_rows: a part closes when it holds this many rows.
    :param part_interval: a part closes this many seconds after its first row (None: only by
        rows and at the end; a file read to its end needs no interval).
    """

    cut_aligned = True  # with a checkpoint, parts close at cuts only

    def __init__(
        self,
        path: Path,
        *,
        part_rows: int,
        part_interval: float | None,
        clock: Any,
        schema: Schema | None = None,
    ) -> None:
        self.path = path
        self.schema = schema  # a schema of rows (SPEC §14); None: L1 quotes
        self.part_rows = part_rows
        self.part_interval = part_interval
        self.clock = clock
        self.rows = 0
        self.instrument: bool | None = None
        self.nanoseconds: bool | None = None
        self._parts: list[tuple[str, int]] = []  # committed: renamed, or named by a checkpoint
        self._pending: list[tuple[str, int]] = []  # closed and fsynced, not renamed yet
        self._placeholder = False  # part 0 is an empty part, for the next real part to replace
        self._lock_fd = -1
        self._created: list[Path] = []  # by `open`, for `discard`: the lock file, the directory
        self._writer: Any = None  # the open pyarrow ParquetWriter of the current part
        self._part_rows = 0  # rows written into the current part's file
        self._part_started: float | None = None
        self._values = ArrowValues()
        self._columns = self._new_columns()

    # -- the interface of base.Sink ---------------------------------------------------------------

    @property
    def buffered(self) -> int:
        """Rows of the current part, not yet in a closed part."""
        return self._part_rows + len(self._columns)

    def open(self) -> None:
        """Create the dataset directory if needed and lock it; change nothing in it."""
        try:
            self.path.mkdir(parents=False)
            self._created = [self.path]
        except FileExistsError:
            pass
        except OSError as exc:
            raise ConfigError(
                f"cannot create output directory {self.path}: {exc.strerror}"
            ) from exc
        try:
            self._open_lock()
        except ConfigError:
            self.discard()
            raise

    def _open_lock(self) -> None:
        if not self.path.is_dir():
            raise ConfigError(f"output {self.path} is a file, not a Parquet dataset directory")
        lock = self.path / _LOCK_NAME
        flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
        try:
            try:
                self._lock_fd = os.open(lock, flags | os.O_EXCL, 0o644)
                self._created.insert(0, lock)
            except FileExistsError:
                self._lock_fd = os.open(lock, flags, 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot use output directory {self.path}: {exc.strerror}") from exc
        take_lock(self._lock_fd, self.path, "output")

    def discard(self) -> None:
        """The run never began: remove the lock file and the directory if `open` created them
        (what was there before stays), and release the directory."""
        for path in self._created:  # the lock file first, while it is still held
            with contextlib.suppress(OSError):
                if path == self.path:
                    path.rmdir()  # only if empty: nothing else was put there
                else:
                    path.unlink()
        self._created = []
        if self._lock_fd >= 0:
            fd, self._lock_fd = self._lock_fd, -1
            os.close(fd)

    def check_resume(self, resume: ParquetState, checkpoint: Path) -> None:
        """Refuse a checkpoint of another dataset, or of this one with a recorded part gone."""
        if not isinstance(resume, ParquetState):
            raise CheckpointError(f"checkpoint {checkpoint} was written for a CSV output")
        if os.path.abspath(self.path) != resume.path:
            raise CheckpointError(
                f"checkpoint {checkpoint} belongs to output {resume.path}, not {self.path}"
            )
        try:
            st = os.stat(self.path)
        except OSError:
            st = None
        if st is None or (st.st_dev, st.st_ino) != (resume.dev, resume.ino):
            raise CheckpointError(
                f"output {self.path} was replaced since checkpoint {checkpoint} was written;"
                " remove the checkpoint to start over"
            )
        for index, (name, _) in enumerate(resume.parts):
            if not (self.path / name).exists() and not (self.path / temp_name(index)).exists():
                raise CheckpointError(
                    f"output {self.path} lost its part {name} since checkpoint {checkpoint} was"
                    " written; remove the checkpoint to start over"
                )

    async def start(self, resume: ParquetState | None) -> None:
        """Keep the checkpoint's parts (finishing their renames) and delete every other part;
        without a checkpoint, delete every part: the run writes the dataset anew."""
        keep = {} if resume is None else dict(resume.parts)
        for entry in self.path.iterdir():
            found = _PART.fullmatch(entry.name)
            if found is None:
                continue
            index = int(found.group(1) or found.group(2))
            name = part_name(index)
            if name in keep and index < len(keep):
                if found.group(2) is not None:  # the crash came between checkpoint and rename
                    os.replace(entry, self.path / name)
                continue
            entry.unlink()
        if resume is not None:
            self._parts = [part for part in resume.parts if part[1]]
            self._placeholder = not self._parts and bool(resume.parts)
            self.rows = resume.rows
            self.instrument, self.nanoseconds = resume.instrument, resume.nanoseconds
        self._sync_directory()

    def use_schema(self, schema: Schema | None) -> None:
        """Write this schema's rows (None: L1 quotes) instead: before any row (`collect` learns
        the feed's schema once connected)."""
        assert not len(self._columns) and not self._part_rows
        self.schema = schema
        self._columns = self._new_columns()

    def set_layout(self, instrument: bool, nanoseconds: bool) -> None:
        """The columns of the rows: with an instrument column or not, times in µs or ns.

        :raises ConfigError: the dataset already holds rows of another layout.
        """
        if self.instrument is not None and (self.instrument, self.nanoseconds) != (
            instrument,
            nanoseconds,
        ):
            raise ConfigError(
                f"output {self.path} holds rows {_describe(self.instrument, self.nanoseconds)},"
                f" but the input now gives rows {_describe(instrument, nanoseconds)}"
            )
        self.instrument, self.nanoseconds = instrument, nanoseconds

    def add(self, quotes: list[Quote]) -> None:
        """Buffer quotes in columns; a full row group goes to the part's file at the next flush."""
        if quotes and self._part_started is None:
            self._part_started = self.clock()
        self._columns.add(quotes)

    def deadline(self) -> float | None:
        """When the current part is due by age (following only)."""
        if self.part_interval is None or self._part_started is None:
            return None
        return self._part_started + self.part_interval

    def part_due(self, now: float) -> bool:
        """Whether the current part should close: full, or old enough."""
        if self.buffered >= self.part_rows:
            return True
        deadline = self.deadline()
        return deadline is not None and now >= deadline and self.buffered > 0

    async def flush(self, *, sync: bool) -> None:
        """Write the full row groups into the current part's file (a part is made durable
        when it closes, not before: ``sync`` asks nothing more)."""
        while len(self._columns) >= ROW_GROUP_ROWS:
            await self._write_rows(min(ROW_GROUP_ROWS, self.part_rows - self._part_rows))
            if self._part_rows >= self.part_rows:
                await anyio.to_thread.run_sync(self._close_part)
                self._part_started = self.clock() if len(self._columns) else None

    async def close_parts(self, *, all_rows: bool) -> None:
        """Close every full part, and with ``all_rows`` a last one of the rows left: each
        written whole and fsynced, under its temporary name until `commit`. With ``all_rows``,
        a dataset that has no part at all gets its empty placeholder."""
        while self.buffered >= self.part_rows or (all_rows and self.buffered):
            room = self.part_rows - self._part_rows
            while room and len(self._columns):
                room -= await self._write_rows(min(room, ROW_GROUP_ROWS))
            await anyio.to_thread.run_sync(self._close_part)
            self._part_started = self.clock() if len(self._columns) else None
        if all_rows and not (self._parts or self._pending or self._placeholder):
            # Committed with the same cut, so never pending beside a real part.
            await anyio.to_thread.run_sync(self._write_table, self._arrow_schema().empty_table())
            await anyio.to_thread.run_sync(self._close_part)

    async def commit(self) -> None:
        """Rename the parts closed since the last commit: they are visible from now on."""
        if not self._pending:
            return
        index = len(self._parts)
        for name, rows in self._pending:
            os.replace(self.path / temp_name(index), self.path / name)  # over a placeholder
            self._placeholder = not rows
            if rows:
                self._parts.append((name, rows))
                index += 1
        self._pending.clear()
        self._sync_directory()

    def state(self) -> ParquetState:
        """The dataset now: committed and closed parts (the checkpoint commits the latter)."""
        st = os.stat(self.path)
        parts = self._parts + self._pending
        if not parts and self._placeholder:
            parts = [(part_name(0), 0)]
        return ParquetState(
            os.path.abspath(self.path),
            st.st_dev,
            st.st_ino,
            tuple(parts),
            self.instrument,
            self.nanoseconds,
        )

    async def aclose(self) -> None:
        """Release the directory; an unclosed part's temporary file stays for a restart to
        delete. Safe to call twice."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        if self._lock_fd >= 0:
            fd, self._lock_fd = self._lock_fd, -1
            os.close(fd)

    # -- writing ----------------------------------------------------------------------------

    async def _write_rows(self, count: int) -> int:
        """Write the first ``count`` buffered rows into the current part; how many it wrote."""
        head, self._columns = self._columns.split(count, self._new_columns())
        await anyio.to_thread.run_sync(self._write_table, head.table(self._arrow_schema()))
        return len(head)

    def _write_table(self, table: pa.Table) -> None:
        import pyarrow.parquet as pq

        index = len(self._parts) + len(self._pending)
        try:
            if self._writer is None:
                self._writer = pq.ParquetWriter(
                    self.path / temp_name(index), table.schema, compression="zstd"
                )
            self._writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        except OSError as exc:
            raise OutputError(
                f"cannot write {self.path / temp_name(index)}: {exc.strerror}"
            ) from exc
        self._part_rows += table.num_rows

    def _close_part(self) -> None:
        index = len(self._parts) + len(self._pending)
        temp = self.path / temp_name(index)
        try:
            self._writer.close()
            self._writer = None
            fd = os.open(temp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise OutputError(f"cannot write {temp}: {exc.strerror}") from exc
        self._pending.append((part_name(index), self._part_rows))
        self.rows += self._part_rows
        self._part_rows = 0

    def _sync_directory(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise OutputError(f"cannot sync {self.path}: {exc.strerror}") from exc

    def _arrow_schema(self) -> pa.Schema:
        """The columns of the rows' layout (before it is known: no instrument, µs)."""
        if self.schema is not None:
            return rows_schema(self.schema, bool(self.instrument))
        return l1_schema(bool(self.instrument), bool(self.nanoseconds))

    def _new_columns(self) -> Any:
        if self.schema is not None:
            return RowColumns(self._values)
        return L1Columns(self._values)


def _describe(instrument: bool | None, nanoseconds: bool | None) -> str:
    columns = "with" if instrument else "without"
    unit = "nanosecond" if nanoseconds else "microsecond"
    return f"{columns} an instrument column and {unit} times"
