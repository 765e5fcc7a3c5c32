"""The file tailer against a small model, under random file operations (SPEC §7).

In the style of Vector's file-source model tests: a hypothesis state machine writes, appends
(whole and partial lines), completes lines, rotates by rename-and-create, copytruncates,
truncates and regrows at once, deletes and re-creates the followed file, and after each step lets
the tailer catch up. The model is the list of lines the tailer must have handed out by then, each
with its number in its own file; the tailer must hand out exactly those, in order, once.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from l3tol1.sources.file import FileSource

HEADER = "h1,h2"


class _Probe(FileSource):
    """A FileSource whose idle waits pause it once it has looked twice and found nothing new:
    then it has caught up, and the test can change the file."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, follow=True, poll_interval=0.0, chunk_size=64)
        self.caught_up = asyncio.Event()
        self.go_on = asyncio.Event()
        self._idle_looks = 0

    async def _wait(self) -> None:
        self._idle_looks += 1
        if self._idle_looks >= 2:
            self.caught_up.set()
            self.go_on.clear()
            await self.go_on.wait()
            self._idle_looks = 0
        await asyncio.sleep(0)


class TailerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="tailer-"))
        self.path = self.folder / "feed.csv"
        self.loop = asyncio.new_event_loop()
        self.source = _Probe(self.path)
        self.chunks = self.source.chunks()
        self.pulling: asyncio.Future[object] | None = None
        self.got: list[tuple[int, str]] = []  # (line number in its file, text)
        self.expected: list[tuple[int, str]] = []
        self.generation = 0  # which file the tailer reads: +1 at each rotation or truncation
        self.lines_in_file = 0  # data lines written to the current file (header not counted)
        self.partial = ""  # a line begun in the current file, without its newline yet
        self.partial_written = ""  # the part of it that is in the file
        self.exists = False
        self.counter = 0
        self.rotated = 0

    def teardown(self) -> None:
        if self.pulling is not None:
            self.pulling.cancel()
        self.loop.run_until_complete(self._close())
        self.loop.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    async def _close(self) -> None:
        await asyncio.sleep(0)
        await self.chunks.aclose()  # type: ignore[attr-defined]
        await self.source.aclose()

    # -- the tailer catches up -----------------------------------------------------------------

    def catch_up(self) -> None:
        """Let the tailer read until it has looked twice at a file that did not change."""
        self.loop.run_until_complete(asyncio.wait_for(self._catch_up(), 10))

    async def _catch_up(self) -> None:
        self.source.caught_up.clear()
        self.source.go_on.set()
        while True:
            if self.pulling is None:
                self.pulling = asyncio.ensure_future(self.chunks.__anext__())
            waiter = asyncio.ensure_future(self.source.caught_up.wait())
            done, _ = await asyncio.wait(
                {self.pulling, waiter}, return_when=asyncio.FIRST_COMPLETED
            )
            if self.pulling in done:
                chunk = self.pulling.result()
                self.pulling = None
                waiter.cancel()
                self._take(chunk)
                continue
            return

    def _take(self, chunk: object) -> None:
        if chunk.header is not None:  # type: ignore[attr-defined]
            assert chunk.header == HEADER  # type: ignore[attr-defined]
        lines = chunk.data.decode().split("\n")[:-1]  # type: ignore[attr-defined]
        for i, text in enumerate(lines):
            self.got.append((chunk.first_line + i, text))  # type: ignore[attr-defined]

    # -- what the file's writer does, and what the model expects of it --------------------------

    @property
    def present(self) -> bool:
        """The writer's file is there, begun with its header."""
        return self.exists and self.path.exists()

    def _line(self) -> str:
        """A line's text: which file it was written to, and a number never used before."""
        self.counter += 1
        return f"{self.generation}:{self.counter}"

    def _expect(self, text: str) -> None:
        self.lines_in_file += 1
        self.expected.append((self.lines_in_file + 1, text))  # the header is line 1

    def _new_file(self, lines: int) -> None:
        texts = [self._line() for _ in range(lines)]
        self.path.write_text(HEADER + "\n" + "".join(t + "\n" for t in texts))
        self.exists = True
        for text in texts:
            self._expect(text)

    @rule(lines=st.integers(0, 4))
    @precondition(lambda self: not self.exists and self.generation == 0)
    def create(self, lines: int) -> None:
        self._new_file(lines)
        self.catch_up()

    @rule(lines=st.integers(1, 5))
    @precondition(lambda self: self.present and not self.partial)
    def append_lines(self, lines: int) -> None:
        texts = [self._line() for _ in range(lines)]
        with self.path.open("a") as f:
            f.write("".join(t + "\n" for t in texts))
        for text in texts:
            self._expect(text)
        self.catch_up()

    @rule(cut=st.integers(1, 3))
    @precondition(lambda self: self.present and not self.partial)
    def append_partial_line(self, cut: int) -> None:
        text = self._line()
        self.partial, self.partial_written = text, text[:cut]
        with self.path.open("a") as f:
            f.write(self.partial_written)
        self.catch_up()

    @rule()
    @precondition(lambda self: self.present and bool(self.partial))
    def complete_line(self) -> None:
        with self.path.open("a") as f:
            f.write(self.partial[len(self.partial_written) :] + "\n")
        text, self.partial = self.partial, ""
        self._expect(text)
        self.catch_up()

    def _old_file_ends(self) -> None:
        """The old file is read to its end: a last line without a newline still counts."""
        if self.partial:
            self._expect(self.partial_written)
            self.partial = ""

    def _next_generation(self) -> None:
        self.generation += 1
        self.lines_in_file = 0

    @rule(lines=st.integers(0, 3))
    @precondition(lambda self: self.present)
    def rotate(self, lines: int) -> None:
        """Rename, then create a new file at the path (logrotate's default)."""
        self._old_file_ends()
        self.rotated += 1
        self.path.rename(self.folder / f"feed.csv.{self.rotated}")
        self._next_generation()
        self._new_file(lines)
        self.catch_up()

    @rule()
    @precondition(lambda self: self.present)
    def copytruncate(self) -> None:
        """Copy, then truncate the file in place; it is written again from its start."""
        self._old_file_ends()
        shutil.copy(self.path, self.folder / "feed.csv.copy")
        with self.path.open("r+") as f:
            f.truncate(0)
        self.catch_up()
        self._next_generation()
        self.exists = False  # empty: the writer starts it again with a header

    @rule(lines=st.integers(1, 4))
    @precondition(lambda self: not self.exists and self.generation > 0 and self.path.exists())
    def write_after_truncation(self, lines: int) -> None:
        with self.path.open("a") as f:
            texts = [self._line() for _ in range(lines)]
            f.write(HEADER + "\n" + "".join(t + "\n" for t in texts))
        self.exists = True
        for text in texts:
            self._expect(text)
        self.catch_up()

    @rule(lines=st.integers(1, 4))
    @precondition(lambda self: self.present and self.lines_in_file > 0 and not self.partial)
    def truncate_and_regrow_at_once(self, lines: int) -> None:
        """Rewritten from its start between two looks, longer than before: the first bytes
        changed, so the tailer reads it again from its start."""
        longer = lines + self.lines_in_file  # more lines than before: past our old offset
        self._next_generation()
        texts = [self._line() for _ in range(longer)]
        self.path.write_text(HEADER + "\n" + "".join(t + "\n" for t in texts))
        for text in texts:
            self._expect(text)
        self.catch_up()

    @rule()
    @precondition(lambda self: self.present)
    def delete(self) -> None:
        """Deleted: the tailer keeps the old file and waits for a new one."""
        os.unlink(self.path)
        self.catch_up()

    @rule(lines=st.integers(0, 3))
    @precondition(lambda self: self.exists and not self.path.exists())
    def recreate(self, lines: int) -> None:
        self._old_file_ends()
        self._next_generation()
        self._new_file(lines)
        self.catch_up()

    # -- the property ---------------------------------------------------------------------------

    @invariant()
    def hands_out_exactly_the_model_lines(self) -> None:
        assert self.got == self.expected


TailerMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("L3TOL1_FUZZ_EXAMPLES", "60")),
    stateful_step_count=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
TestTailer = TailerMachine.TestCase
