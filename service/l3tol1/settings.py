"""The one settings object, built once by the CLI from the option table and read by the rest."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SHUTDOWN_TIMEOUT", "Settings"]

# A clean stop (SIGTERM, SIGINT, SIGHUP) must be done within this long (SPEC §8: "within a few
# seconds"); the final flush and fsync get a little longer before a stuck disk is given up on.
SHUTDOWN_TIMEOUT = 4.0
FINAL_FLUSH_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Settings:
    """Every option of a run, validated (see options.py for the rules and defaults)."""

    input_file: Path = Path("l3_data.csv")
    input_format: str | None = None  # None: by the data's first bytes
    output_file: Path = Path("l1_data.csv")
    output_format: str | None = None  # None: by the output's name
    schema: str = "l1"  # the rows written (SPEC §14)
    # --schema (or its variable) was given, not defaulted: `work` and `collect` take the feed's
    # schema unless one is given, and refuse one that differs from it.
    schema_given: bool = field(default=False, compare=False)
    batch_size: int = 1000
    max_flush_interval: float = 2.0
    gap_timeout: float = 2.0
    max_pending: int = 100_000
    start_seq: int | None = None
    follow: bool | None = None  # None: follow, unless the input can only be read to its end
    reject_file: Path | None = None
    checkpoint: Path | None = None
    log_format: str = "json"
    log_level: str = "info"
    instrument_column: str | None = None
    instruments: tuple[str, ...] | None = None
    part_rows: int = 1_000_000
    part_interval: float = 60.0
    core: str = "auto"  # compiled, python, or auto (compiled when it was built)
    progress_interval: float = 10.0
    poll_interval: float = 0.02
    checkpoint_interval: float = 1.0
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    stall_timeout: float = 30.0
    nats_url: str = "nats://127.0.0.1:4222"  # publish, work, collect (SPEC §13)
    feed: str = "default"
    subject_prefix: str = "l3tol1"
    partitions: int = 16
    interactive: bool = False  # stderr is a terminal: progress bar (--no-follow), summary table
    warnings: tuple[str, ...] = field(default=(), compare=False)  # for the start of the log
    command: str = "convert"  # the command run (options.COMMANDS)

    @property
    def parquet(self) -> bool:
        """Whether the output is a Parquet dataset (SPEC §11)."""
        if self.output_format is not None:
            return self.output_format == "parquet"
        return self.output_file.name.endswith(".parquet")

    @property
    def reject_path(self) -> Path:
        """The reject file: ``--reject-file``, or ``<output-file>.rejects.jsonl``."""
        if self.reject_file is not None:
            return self.reject_file
        return self.output_file.with_name(self.output_file.name + ".rejects.jsonl")

    def as_log_fields(self) -> dict[str, Any]:
        """The effective settings of the command's options, for the start log line."""
        from l3tol1.options import options_of

        values = asdict(self)
        used = {option.dest for option in options_of(self.command)}
        fields = {k: (str(v) if isinstance(v, Path) else v) for k, v in values.items() if k in used}
        if "reject_file" in used:
            fields["reject_file"] = str(self.reject_path)
        if "output_format" in used:
            fields["output_format"] = "parquet" if self.parquet else "csv"
        return fields
