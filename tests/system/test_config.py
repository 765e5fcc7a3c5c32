"""Configuration through the real CLI (SPEC §6): a bad option, value, path or header is exit 2
with one line `l3tol1: error: ...`, never a traceback; L3TOL1_* variables configure the run, a
flag wins over its variable, an empty one is unset and a misspelt one is named. A checkpoint
that does not match the run is test_restart.py's; paths that collide, test_faults.py's."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import (
    GOLDEN_SHA256,
    HEADER,
    REFERENCE_INPUT,
    REFERENCE_OUTPUT,
    add,
    cli,
    cli_env,
    log_events,
    one_error_line,
    sha256,
    write_l3,
)

GOLDEN = REFERENCE_OUTPUT.read_bytes()


class TestConfigErrors:
    @pytest.mark.parametrize(
        ("args", "words"),
        [
            (["--no-such-option"], "unknown option --no-such-option"),
            (["-b", "0"], "--batch-size"),
            (["-t", "soon"], "--max-flush-interval"),
            (["--log-format", "xml"], "--log-format"),
            (["--max-pending", "-1"], "--max-pending"),
        ],
    )
    def test_bad_option_exits_2_with_one_line(self, tmp_path: Path, args: list, words: str) -> None:
        """Bad usage: exit 2, exactly one line on stderr naming the option."""
        result = cli("-i", REFERENCE_INPUT, "-o", tmp_path / "o.csv", "--no-follow", *args)
        assert result.returncode == 2
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and words in lines[0] and lines[0].startswith("l3tol1: error:")

    def test_missing_input_without_follow(self, tmp_path: Path) -> None:
        """A missing input with --no-follow is a configuration error; no output is created."""
        result = cli("-i", tmp_path / "nope.csv", "-o", tmp_path / "o.csv", "--no-follow")
        assert result.returncode == 2
        assert result.stderr.splitlines() == [
            f"l3tol1: error: input file {tmp_path / 'nope.csv'} does not exist"
        ]
        assert not (tmp_path / "o.csv").exists()

    @pytest.mark.parametrize(
        ("content", "words"),
        [
            (b"", "empty"),
            (b"seq_num,add_order_id,time\n1,2,3\n", "lacks required column(s) add_side"),
            (b"\xff\xfe garbage\n", "not valid UTF-8"),
        ],
    )
    def test_unreadable_header(self, tmp_path: Path, content: bytes, words: str) -> None:
        """A header that is empty, undecodable or missing columns: exit 2, one line."""
        src = tmp_path / "l3.csv"
        src.write_bytes(content)
        result = cli("-i", src, "-o", tmp_path / "o.csv", "--no-follow")
        assert result.returncode == 2
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and words in lines[0]


class TestClearErrors:
    @pytest.mark.parametrize(
        ("args", "words"),
        [
            (("-o", ""), "--output-file"),
            (("-o", "/"), "--output-file"),
            (("--checkpoint", ""), "--checkpoint"),
            (("--checkpoint", "/"), "--checkpoint"),
            (("--poll-interval", "0"), "--poll-interval"),
            (("--log-format", "xml"), "--log-format"),
        ],
    )
    def test_bad_paths_and_values_are_one_line(
        self, tmp_path: Path, args: tuple, words: str
    ) -> None:
        """Empty paths, directories and out-of-range values: exit 2, one line, no traceback."""
        base = ("-i", REFERENCE_INPUT, "--no-follow")
        if "-o" not in args:
            base += ("-o", tmp_path / "o.csv")
        assert words in one_error_line(cli(*base, *args))

    def test_names_are_case_insensitive_like_levels(self, tmp_path: Path) -> None:
        """--log-format JSON is accepted, as --log-level DEBUG is."""
        result = cli(
            "-i", REFERENCE_INPUT, "-o", tmp_path / "o.csv", "--no-follow",
            "--log-format", "JSON", "--log-level", "WARNING",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr

    def test_a_column_named_twice_is_refused(self, tmp_path: Path) -> None:
        """A header that names a column it reads twice is ambiguous: exit 2, naming it."""
        src = write_l3(
            tmp_path / "l3.csv", [add(1, "a", "BUY", "10", "1") + ",9"], HEADER + ",seq_num"
        )
        assert "seq_num" in one_error_line(cli("-i", src, "-o", tmp_path / "o.csv", "--no-follow"))


class TestEnvironment:
    def test_environment_configures_and_flags_win(self, tmp_path: Path) -> None:
        """L3TOL1_* variables set options; a flag wins over its variable."""
        out = tmp_path / "env.csv"
        result = cli(
            "-o",
            out,
            env=cli_env(
                L3TOL1_INPUT_FILE=str(REFERENCE_INPUT),
                L3TOL1_OUTPUT_FILE=str(tmp_path / "loses.csv"),
                L3TOL1_FOLLOW="no",
                L3TOL1_REJECT_FILE=str(tmp_path / "rej.jsonl"),
            ),
        )
        assert result.returncode == 0, result.stderr
        assert sha256(out) == GOLDEN_SHA256
        assert not (tmp_path / "loses.csv").exists()
        assert (tmp_path / "rej.jsonl").exists()
        start = log_events(result.stderr)[0]
        assert start["event"] == "start" and start["follow"] is False

    def test_bad_environment_value(self, tmp_path: Path) -> None:
        """A bad L3TOL1_* value is named in one line."""
        result = cli(
            "-i",
            REFERENCE_INPUT,
            "-o",
            tmp_path / "o.csv",
            env=cli_env(L3TOL1_BATCH_SIZE="many", L3TOL1_FOLLOW="false"),
        )
        assert result.returncode == 2
        assert result.stderr.strip() == (
            "l3tol1: error: L3TOL1_BATCH_SIZE='many' is not a valid positive integer"
        )

    def test_an_empty_variable_means_unset(self, tmp_path: Path) -> None:
        """L3TOL1_CHECKPOINT= runs without a checkpoint, as if it were not there."""
        out = tmp_path / "o.csv"
        result = cli(
            "-i", REFERENCE_INPUT, "-o", out, "--no-follow", env=cli_env(L3TOL1_CHECKPOINT="")
        )
        assert result.returncode == 0, result.stderr
        assert out.read_bytes() == GOLDEN

    def test_a_flag_overrides_a_bad_variable(self, tmp_path: Path) -> None:
        """A bad variable does no harm when its flag is given."""
        out = tmp_path / "o.csv"
        env = cli_env(L3TOL1_BATCH_SIZE="many")
        result = cli("-i", REFERENCE_INPUT, "-o", out, "--no-follow", "-b", "10", env=env)
        assert result.returncode == 0, result.stderr

    def test_a_misspelt_variable_is_named_with_the_closest_option(self, tmp_path: Path) -> None:
        """An L3TOL1_* variable that is no option is reported, not silently ignored."""
        env = cli_env(L3TOL1_MAX_PENDNG="5")
        result = cli("-i", REFERENCE_INPUT, "-o", tmp_path / "o.csv", "--no-follow", env=env)
        assert result.returncode == 0, result.stderr
        warning = next(line for line in result.stderr.splitlines() if "L3TOL1_MAX_PENDNG" in line)
        assert "did you mean L3TOL1_MAX_PENDING?" in warning
