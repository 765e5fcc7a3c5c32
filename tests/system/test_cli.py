"""The real CLI end to end: the golden output of the reference input, the console script, and
the progress log."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import (
    GOLDEN_SHA256,
    REFERENCE_INPUT,
    REFERENCE_OUTPUT,
    add,
    book_rows,
    cli,
    cli_env,
    finish,
    log_events,
    one_error_line,
    rows_of,
    sha256,
    start_cli,
    wait_for,
    write_l3,
)


class TestGolden:
    def test_reference_data_is_byte_identical(self, tmp_path: Path) -> None:
        """`python -m l3tol1 --no-follow` on the bundled data gives the expected file."""
        assert sha256(REFERENCE_OUTPUT) == GOLDEN_SHA256
        out = tmp_path / "l1.csv"
        result = cli("-i", REFERENCE_INPUT, "-o", out, "--no-follow")
        assert result.returncode == 0, result.stderr
        assert sha256(out) == GOLDEN_SHA256
        assert (tmp_path / "l1.csv.rejects.jsonl").read_bytes() == b""
        summary = log_events(result.stderr)[-1]
        assert summary["event"] == "summary"
        assert summary["events_applied"] == 34247
        assert summary["rows_written"] == 19290

    def test_console_script_is_the_same_program(self, tmp_path: Path) -> None:
        """The installed `l3tol1` script gives the same bytes."""
        script = Path(sys.executable).with_name("l3tol1")
        if not script.exists():
            found = shutil.which("l3tol1")
            if found is None:
                pytest.fail("the l3tol1 console script is not installed")
            script = Path(found)

        out = tmp_path / "l1.csv"
        result = subprocess.run(
            [script, "-i", REFERENCE_INPUT, "-o", out, "--no-follow"],
            capture_output=True,
            text=True,
            env=cli_env(),
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert sha256(out) == GOLDEN_SHA256


class TestProgress:
    def test_progress_lines_while_running(self, tmp_path: Path) -> None:
        """A progress line with every counter is logged periodically while following."""
        src = write_l3(
            tmp_path / "l3.csv",
            [add(1, "a", "BUY", "10", "1"), add(2, "b", "SELL", "11", "1"), "junk"],
        )
        proc = start_cli(
            "-i", src, "-o", tmp_path / "o.csv", "--progress-interval", "0.2", "--start-seq", "1"
        )
        collected: list[str] = []
        reader = threading.Thread(target=lambda: collected.extend(proc.stderr), daemon=True)
        with proc:
            reader.start()
            wait_for(
                lambda: sum('"progress"' in line for line in collected) >= 3,
                20,
                "three progress lines",
            )
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=5)
            reader.join(timeout=5)
        events = log_events("".join(collected))
        progress = [e for e in events if e["event"] == "progress"]
        assert len(progress) >= 3
        last = progress[-1]
        for key in (
            "events_read",
            "events_applied",
            "rows_written",
            "pending",
            "rejects",
            "anomalies",
            "gaps_skipped",
            "events_per_s",
        ):
            assert key in last
        assert last["events_applied"] == 2 and last["rejects"] == {"wrong field count": 1}

    def test_progress_interval_zero_means_none(self, tmp_path: Path) -> None:
        """--progress-interval 0 turns the progress lines off instead of flooding the log."""
        src = write_l3(tmp_path / "l3.csv", book_rows(1, 3))
        proc = start_cli(
            "-i", src, "-o", tmp_path / "o.csv", "--progress-interval", "0", "-t", "0.02"
        )
        wait_for(
            lambda: (
                len(rows_of(tmp_path / "o.csv")) == 2 if (tmp_path / "o.csv").exists() else False
            ),
            20,
            "rows",
        )
        status, stderr = finish(proc)
        assert status == 0 and '"progress"' not in stderr and len(stderr) < 10_000


class TestCommands:
    """The command line's commands, as a user meets them (SPEC §6, §13; docs/commands)."""

    def test_convert_is_the_plain_command(self, tmp_path: Path) -> None:
        out = tmp_path / "out.csv"
        result = cli("convert", "-i", REFERENCE_INPUT, "-o", out, "--no-follow")
        assert result.returncode == 0, result.stderr
        assert out.read_bytes() == REFERENCE_OUTPUT.read_bytes()

    def test_each_command_has_its_own_help(self) -> None:
        top = cli("--help").stdout
        assert all(f"  {c} " in top for c in ("convert", "publish", "work", "collect", "plot"))
        work = cli("work", "--help").stdout
        assert "usage: l3tol1 work" in work and "--nats-url" in work
        assert "--input-file" not in work and "--output-file" not in work
        assert "--instrument" in cli("plot", "--help").stdout

    @pytest.mark.parametrize(
        ("args", "line"),
        [
            (["colect"], "l3tol1: error: unknown command 'colect'; did you mean collect?"),
            (["work", "-i", "x.csv"], "l3tol1: error: -i is not an option of work"),
            (["--max-pendin", "3"], "did you mean --max-pending?"),
        ],
    )
    def test_a_wrong_word_is_exit_2_with_one_line(self, args: list[str], line: str) -> None:
        result = cli(*args)
        assert result.returncode == 2
        assert line in one_error_line(result)

    def test_plot_draws_one_instrument_of_a_parquet_output(self, tmp_path: Path) -> None:
        pytest.importorskip("matplotlib")
        rows = [
            "ts_recv,ts_event,instrument,action,side,price,size,sequence,flags,"
            "bid_px_00,ask_px_00,bid_sz_00,ask_sz_00,bid_ct_00,ask_ct_00",
            "1000000000,1000000000,A,A,B,10,1,1,0,10,,1,,1,",  # one-sided: not drawn
            "2000000000,2000000000,A,A,A,11,1,2,0,10,11,1,1,1,1",
            "3000000000,3000000000,B,A,B,99,1,3,1,99,98,1,1,1,1",
            "4000000000,4000000000,A,A,A,12,1,4,0,10,12,1,2,1,2",
        ]
        csv_out = tmp_path / "mbp.csv"
        csv_out.write_text("\n".join(rows) + "\n")
        import pyarrow.csv as pv
        import pyarrow.parquet as pq

        dataset = tmp_path / "mbp.parquet"
        dataset.mkdir()
        pq.write_table(pv.read_csv(csv_out), dataset / "part-000000.parquet")
        for source in (csv_out, dataset):
            result = cli("plot", source, "-o", tmp_path / "a.png")
            assert result.returncode == 0, result.stderr
            assert "2 rows" in result.stdout  # instrument A (the first), two-sided rows
            result = cli("plot", source, "--instrument", "B", "-o", tmp_path / "b.png")
            assert "1 rows" in result.stdout
        result = cli("plot", REFERENCE_OUTPUT, "--instrument", "X", "-o", tmp_path / "c.png")
        assert result.returncode == 2 and "no instrument column" in result.stderr
