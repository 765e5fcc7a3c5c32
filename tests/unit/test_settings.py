"""Options and L3TOL1_* variables read into settings in process (cli.parse_settings, SPEC §6): a bad
option or value is a ConfigError of one sentence naming it; a flag wins over its variable, an
empty variable is unset, a misspelt one is named. That it reaches the user as one line and exit
2 is system/test_config.py's."""

from __future__ import annotations

from pathlib import Path

import pytest

from l3tol1.cli import parse_settings
from l3tol1.errors import ConfigError


class TestOptions:
    @pytest.mark.parametrize(
        ("argv", "words"),
        [
            (["--no-such-option"], "unknown option --no-such-option"),
            (["--max-pendin", "3"], "unknown option --max-pendin; did you mean --max-pending?"),
            (["-b", "0"], "--batch-size"),
            (["-t", "soon"], "--max-flush-interval"),
            (["--log-format", "xml"], "--log-format"),
            (["--max-pending", "-1"], "--max-pending"),
            (["--poll-interval", "0"], "--poll-interval"),
            (["-o", ""], "--output-file"),
            (["--checkpoint", ""], "--checkpoint"),
            (["--instruments", '"ES'], "--instruments"),
        ],
    )
    def test_a_bad_option_or_value_is_named(self, argv: list[str], words: str) -> None:
        """One sentence naming the option (the CLI prints it as its one line)."""
        with pytest.raises(ConfigError) as raised:
            parse_settings(argv, {})
        assert words in str(raised.value) and "\n" not in str(raised.value)

    def test_names_are_case_insensitive_like_levels(self) -> None:
        """--log-format JSON is json, as --log-level WARNING is warning."""
        settings = parse_settings(["--log-format", "JSON", "--log-level", "WARNING"], {})
        assert (settings.log_format, settings.log_level) == ("json", "warning")


class TestEnvironment:
    def test_variables_set_options_and_a_flag_wins(self) -> None:
        """L3TOL1_* variables set their options; a flag wins over its variable."""
        settings = parse_settings(
            ["-o", "wins.csv"],
            {
                "L3TOL1_INPUT_FILE": "in.csv",
                "L3TOL1_OUTPUT_FILE": "loses.csv",
                "L3TOL1_FOLLOW": "no",
            },
        )
        assert settings.input_file == Path("in.csv") and settings.output_file == Path("wins.csv")
        assert settings.follow is False

    def test_a_bad_variable_is_named_with_its_value(self) -> None:
        """The variable, its value and what it should be, in one sentence."""
        with pytest.raises(ConfigError) as raised:
            parse_settings([], {"L3TOL1_BATCH_SIZE": "many", "L3TOL1_FOLLOW": "false"})
        assert str(raised.value) == "L3TOL1_BATCH_SIZE='many' is not a valid positive integer"

    def test_a_flag_overrides_a_bad_variable(self) -> None:
        """A bad variable is not read when its flag is given."""
        assert parse_settings(["-b", "10"], {"L3TOL1_BATCH_SIZE": "many"}).batch_size == 10

    def test_an_empty_variable_means_unset(self) -> None:
        """L3TOL1_CHECKPOINT= is no checkpoint, as if it were not there."""
        assert parse_settings([], {"L3TOL1_CHECKPOINT": ""}).checkpoint is None

    def test_a_misspelt_variable_is_named_with_the_closest_option(self) -> None:
        """A variable that is no option is a warning naming the closest one, never silent."""
        settings = parse_settings([], {"L3TOL1_MAX_PENDNG": "5"})
        assert settings.warnings == (
            "L3TOL1_MAX_PENDNG is not an l3tol1 variable and is ignored;"
            " did you mean L3TOL1_MAX_PENDING?",
        )


class TestCommands:
    """Each command has its own options, from the one table (SPEC §6, §13)."""

    @pytest.mark.parametrize(
        ("command", "argv", "words"),
        [
            ("work", ["-i", "x.csv"], "-i is not an option of work (it is of convert, publish)"),
            ("work", ["--output-file=x"], "--output-file is not an option of work"),
            ("collect", ["--partitions", "4"], "--partitions is not an option of collect"),
            ("convert", ["--nats-url", "nats://x"], "--nats-url is not an option of convert"),
            ("work", ["--no-follow"], "--no-follow is not an option of work"),
            ("collect", ["--feeed", "x"], "unknown option --feeed; did you mean --feed?"),
        ],
    )
    def test_an_option_the_command_does_not_use_is_named(
        self, command: str, argv: list[str], words: str
    ) -> None:
        with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
            parse_settings(argv, {}, command=command)

    def test_a_variable_the_command_does_not_use_is_left_unread(self) -> None:
        """One environment serves every role (compose's `x-l3tol1` block, a unit's env file)."""
        env = {"L3TOL1_INPUT_FILE": "in.csv", "L3TOL1_FEED": "eu", "L3TOL1_MAX_PENDING": "x"}
        settings = parse_settings([], env, command="work")
        assert settings.feed == "eu"
        assert settings.input_file == Path("l3_data.csv")  # the default: work reads no file
        with pytest.raises(ConfigError, match="L3TOL1_MAX_PENDING"):
            parse_settings([], env, command="convert")

    def test_the_start_line_shows_the_command_s_settings(self) -> None:
        convert = parse_settings([], {}).as_log_fields()
        work = parse_settings([], {}, command="work").as_log_fields()
        assert "nats_url" not in convert and "input_file" in convert
        assert "nats_url" in work and "input_file" not in work and "schema" in work

    @pytest.mark.parametrize(
        ("argv", "command", "left"),
        [
            ([], "convert", []),
            (["-i", "x"], "convert", ["-i", "x"]),
            (["convert", "-i", "x"], "convert", ["-i", "x"]),
            (["collect", "--no-follow"], "collect", ["--no-follow"]),
            (["plot", "out.csv"], "plot", ["out.csv"]),
        ],
    )
    def test_the_first_word_names_the_command(
        self, argv: list[str], command: str, left: list[str]
    ) -> None:
        from l3tol1.cli import command_of

        assert command_of(argv) == command
        assert argv == left

    def test_a_misspelt_command_gets_the_closest(self) -> None:
        from l3tol1.cli import command_of

        with pytest.raises(ConfigError, match="unknown command 'colect'; did you mean collect"):
            command_of(["colect", "--no-follow"])
