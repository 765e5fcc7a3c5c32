"""Rotation and truncation of a followed file (SPEC §7), through the real CLI: rename and create,
copytruncate, truncated and regrown between two looks, deleted and re-created; and with a
checkpoint, a rotation while stopped (resumed) and a file replaced while stopped (refused)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import (
    HEADER,
    book_rows,
    cli,
    finish,
    read_offset,
    start_cli,
    wait_for,
    write_l3,
)


class TestRotation:
    def start(self, tmp_path: Path, *extra: str) -> tuple[Path, Path, subprocess.Popen[str]]:
        src, out = tmp_path / "feed.csv", tmp_path / "l1.csv"
        proc = start_cli(
            "-i", src, "-o", out, "--start-seq", "1", "-t", "0.02", "--gap-timeout", "60", *extra
        )
        return src, out, proc

    @staticmethod
    def rows(out: Path) -> list[str]:
        return [line.split(",")[-1] for line in out.read_text().splitlines()[1:]]

    @staticmethod
    def book_rows(first: int, last: int) -> list[str]:
        return book_rows(first, last)

    def test_rename_and_create(self, tmp_path: Path) -> None:
        """Old file read to its end (even lines added after the rename), then the new one."""
        src, out, proc = self.start(tmp_path)
        write_l3(src, self.book_rows(1, 10))
        wait_for(lambda: out.exists() and len(self.rows(out)) == 9, 10, "first file")
        src.rename(tmp_path / "feed.csv.1")
        with (tmp_path / "feed.csv.1").open("a") as f:
            f.write(self.book_rows(11, 12)[0] + "\n" + self.book_rows(12, 12)[0])  # no newline
        write_l3(src, self.book_rows(13, 20))
        wait_for(lambda: len(self.rows(out)) == 19, 10, "both files")
        status, stderr = finish(proc)
        assert status == 0 and "input_rotated" in stderr
        assert self.rows(out) == [str(s) for s in range(2, 21)]

    def test_copytruncate(self, tmp_path: Path) -> None:
        """The file shrinks below the read offset: read again from its start."""
        src, out, proc = self.start(tmp_path)
        write_l3(src, self.book_rows(1, 10))
        wait_for(lambda: out.exists() and len(self.rows(out)) == 9, 10, "first part")
        shutil.copy(src, tmp_path / "feed.csv.1")
        with src.open("r+") as f:
            f.truncate(0)
        # Grown again only once l3tol1 went back to the start (else: the next test's case).
        wait_for(lambda: read_offset(proc.pid, src) == 0, 10, "l3tol1 to see the truncation")
        with src.open("a") as f:
            f.write("\n".join([HEADER, *self.book_rows(11, 20)]) + "\n")
        wait_for(lambda: len(self.rows(out)) == 19, 10, "after truncation")
        status, stderr = finish(proc)
        assert status == 0 and "input_truncated" in stderr
        assert self.rows(out) == [str(s) for s in range(2, 21)]

    def test_truncate_and_regrow_between_looks(self, tmp_path: Path) -> None:
        """Truncated and rewritten past the old offset at once: the changed head tells."""
        src, out, proc = self.start(tmp_path, "--poll-interval", "0.3")
        write_l3(src, self.book_rows(1, 4))
        wait_for(lambda: out.exists() and len(self.rows(out)) == 3, 10, "first part")
        write_l3(src, self.book_rows(5, 20))  # open("w"): truncate and regrow in one go
        wait_for(lambda: len(self.rows(out)) == 19, 10, "after truncation")
        status, stderr = finish(proc)
        assert status == 0 and "input_truncated" in stderr

    def test_deleted_then_recreated(self, tmp_path: Path) -> None:
        """Deletion is waited out; the re-created file is read from its start."""
        src, out, proc = self.start(tmp_path)
        write_l3(src, self.book_rows(1, 10))
        wait_for(lambda: out.exists() and len(self.rows(out)) == 9, 10, "first file")
        src.unlink()
        write_l3(src, self.book_rows(11, 20))
        wait_for(lambda: len(self.rows(out)) == 19, 10, "re-created file")
        status, _ = finish(proc)
        assert status == 0
        assert self.rows(out) == [str(s) for s in range(2, 21)]

    def test_rotation_while_stopped_resumes_old_file_then_new(self, tmp_path: Path) -> None:
        """A checkpoint taken before a rotation resumes the renamed file, then the new one."""
        ckpt = tmp_path / "c.ckpt"
        src, out, proc = self.start(tmp_path, "--checkpoint", str(ckpt))
        write_l3(src, self.book_rows(1, 10))
        wait_for(lambda: out.exists() and len(self.rows(out)) == 9, 10, "first file")
        assert finish(proc)[0] == 0
        src.rename(tmp_path / "feed.csv.1")
        with (tmp_path / "feed.csv.1").open("a") as f:
            f.write("\n".join(self.book_rows(11, 12)) + "\n")
        write_l3(src, self.book_rows(13, 20))
        _, _, proc = self.start(tmp_path, "--checkpoint", str(ckpt))
        wait_for(lambda: len(self.rows(out)) == 19, 10, "both files")
        status, stderr = finish(proc)
        assert status == 0, stderr
        assert self.rows(out) == [str(s) for s in range(2, 21)]

    @pytest.mark.parametrize("how", ["new inode", "same inode"])
    def test_file_replaced_while_stopped_is_refused(self, tmp_path: Path, how: str) -> None:
        """A checkpoint never applies to a different file, even one that reuses the inode."""
        ckpt = tmp_path / "c.ckpt"
        src, out, proc = self.start(tmp_path, "--checkpoint", str(ckpt))
        write_l3(src, self.book_rows(1, 10))
        wait_for(lambda: out.exists() and len(self.rows(out)) == 9, 10, "first file")
        assert finish(proc)[0] == 0
        before = out.read_bytes()
        if how == "new inode":
            src.unlink()
            write_l3(src, self.book_rows(101, 120))
        else:
            with src.open("r+") as f:  # same inode, other content
                f.seek(0)
                f.write(src.read_text().replace(",o1,", ",x1,"))
        result = cli(
            "-i", src, "-o", out, "--checkpoint", ckpt, "--start-seq", "1", "--gap-timeout", "60"
        )
        assert result.returncode == 2
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and "replaced while l3tol1 was stopped" in lines[0]
        assert out.read_bytes() == before
