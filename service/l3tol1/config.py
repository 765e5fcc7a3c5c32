"""The one settings object, built once by the CLI (SPEC §6) and read by everything else."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["Settings"]


@dataclass(frozen=True, slots=True)
class Settings:
    """Every option of a run. Defaults are SPEC §6's."""

    input_file: Path = Path("l3_data.csv")
    output_file: Path = Path("l1_data.csv")
    batch_size: int = 1000
    max_flush_interval: float = 2.0
    gap_timeout: float = 2.0
    max_pending: int = 100_000
    start_seq: int | None = None
    follow: bool = True
    reject_file: Path | None = None
    checkpoint: Path | None = None
    log_format: str = "json"
    log_level: str = "info"
    # Not in SPEC §6; documented in the README.
    progress_interval: float = 10.0
    poll_interval: float = 0.02
    checkpoint_interval: float = 1.0
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    stall_timeout: float = 30.0
    interactive: bool = False  # stderr is a terminal: progress bar (--no-follow), summary table
    shutdown_timeout: float = 4.0

    @property
    def reject_path(self) -> Path:
        """The reject file: ``--reject-file``, or ``<output-file>.rejects.jsonl``."""
        if self.reject_file is not None:
            return self.reject_file
        return self.output_file.with_name(self.output_file.name + ".rejects.jsonl")

    def as_log_fields(self) -> dict[str, Any]:
        """The effective settings, for the start log line."""
        fields = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}
        fields["reject_file"] = str(self.reject_path)
        return fields
