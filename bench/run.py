"""Benchmark of the l3tol1 service against the naive reference, printed as a table.

Usage (from the repository root)::

    python bench/run.py [--quick] [--cases 1m,10m,deep,follow] [--strict]

Cases (``--quick`` divides every size by 10 and shortens the follow run):

- ``startup``: ``l3tol1 --version`` and a one-row file, median of 15 runs, beside the bare
  interpreter.
- ``1m``: 1M events, window 20. Compiled core, Python core (``--core python``) and naive in
  the same run; whole-process time, the summary's events/s, peak RSS, ratios, outputs MATCH.
- ``10m``: 10M events, window 20. Service only (naive would need ~9 GB): peak RSS must stay
  flat. Its output is checked against the naive output of the 1M case, which is exactly its
  first part (the generator's stream for a seed does not depend on its length).
- ``deep``: deep book (~5000 orders over ~3000 levels): marginal events/s at 600k against
  the marginal rate at 60k (start-up taken out), and a shallow book for context.
- ``follow``: ``--follow`` latency: rows appended at a fixed rate (default 50k/s for 10 s),
  p50/p99 of the time from a row's append to its L1 row showing up in the output file, then
  SIGTERM (exit 0 expected) and the output compared with naive. The service gets
  ``--start-seq`` so that its start-up window (SPEC section 5) is not counted as latency.
- ``checkpoint``, ``instruments`` (1,000 instruments against the naive per-instrument
  reference), ``formats`` (gzip, zstd, Parquet), ``mbo`` (a synthetic 1M-record .dbn.zst
  against the naive MBO reference, and a 1.1M-record one of 50 instruments; each one's
  whole-process time over that of Databento's decoder decoding the same file into records,
  bench/decode_dbn.py).
- ``instructions``: instructions per event of each core, counted by valgrind's callgrind.
- ``schemas``: the output schemas (SPEC §14) beside l1 in the same run: 1M events, window 20,
  CSV output, compiled core, with ``--schema l1``, ``mbp-1`` and ``mbp-10``; each one's rate
  (whole process and the summary's work) and its ratio to l1's, peak RSS. With
  ``--schemas-10m``, mbp-1 and mbp-10 also on the 10M input: peak RSS must stay flat.

Timings are single runs on a shared machine: expect a few percent of noise.

The service runs as ``<python> -m l3tol1`` with PYTHONPATH=<repo>/service, where <python> is
<repo>/.venv/bin/python if it exists, else this interpreter. The naive reference runs under the
same interpreter. Peak RSS is the child's ru_maxrss from os.wait4 (KiB on Linux). Generated
inputs and all outputs are cached under bench/.cache/ (keyed by a hash of generate.py).

Exit status: 1 if any output mismatched or a service run failed; with ``--strict`` also when a
target is missed; 0 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import filecmp
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
CACHE = BENCH / ".cache"
sys.path.insert(0, str(BENCH))

import generate  # noqa: E402  (bench/ is not a package; the path is set just above)

# Targets printed next to the figures (issue 11: the compiled core).
TARGET_RATIO = 20.0  # naive time over the service's whole-process time at 1M, window 20
TARGET_WORK_RATE = 4_000_000  # events/s of the work itself (the summary line) at 1M
TARGET_RSS_MB = 64.0  # peak RSS at 1M and 10M, default options (issue 21)
TARGET_DEEP = 0.25  # deep-book marginal rate at 600k at most 25% below that at 60k
TARGET_P99_MS = 50.0  # follow mode at 50k ev/s, -t 0.05: append -> durable L1 row
TARGET_INSTRUMENTS_RATIO = 12.0  # 1,000 instruments: naive per-instrument time over ours
TARGET_MBO_RATE = 5_000_000  # records/s on the synthetic 1M-record .dbn.zst
# Issue 21: the service's whole process on a .dbn.zst over databento_dbn merely decoding it.
TARGET_MBO_DECODE_RATIO = 2.0
TARGET_STARTUP_MS = 60.0  # `l3tol1 --version` and a one-row file, median of STARTUP_RUNS
# Issue 19: each schema's rate over l1's (1M events, CSV, compiled core); RSS flat to 10M.
TARGET_SCHEMA_RATIO = {"mbp-1": 0.7, "mbp-10": 0.5}
TARGET_SCHEMA_RSS_GROWTH_MB = 4.0  # peak RSS at 10M at most this much above that at 1M
STARTUP_RUNS = 15

ALL_CASES = (
    "startup", "1m", "10m", "deep", "follow", "checkpoint", "instruments", "formats", "mbo",
    "instructions", "jetstream", "schemas",
)  # fmt: skip


@dataclass
class Proc:
    """One finished child process."""

    wall: float
    rss_kib: int
    code: int
    stderr: Path

    @property
    def rss_mb(self) -> float:
        """Peak RSS in MiB."""
        return self.rss_kib / 1024


@dataclass
class Report:
    """Rows of the final table plus the failure flags that decide the exit status."""

    rows: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    failed: bool = False
    missed: bool = False

    def add(
        self, case: str, what: str, value: str, target: str = "", ok: bool | None = None
    ) -> None:
        """Record a figure; ok=True/False marks a target met or missed."""
        verdict = "" if ok is None else ("PASS" if ok else "MISS")
        self.missed |= ok is False
        self.rows.append((case, what, value, target, verdict))
        print(f"  [{case}] {what}: {value}" + (f"  (target {target}: {verdict})" if target else ""))

    def fail(self, case: str, what: str, value: str) -> None:
        """Record a mismatch or failed run: the exit status becomes 1."""
        self.failed = True
        self.rows.append((case, what, value, "", "FAIL"))
        print(f"  [{case}] {what}: {value}  FAIL")

    def print_table(self) -> None:
        """Print every recorded row as an aligned table."""
        head = ("case", "measure", "value", "target", "result")
        widths = [max(len(r[i]) for r in [head, *self.rows]) for i in range(5)]
        line = "  ".join(f"{{:<{w}}}" for w in widths)
        print()
        print(line.format(*head))
        print(line.format(*("-" * w for w in widths)))
        for row in self.rows:
            print(line.format(*row).rstrip())


def rate(n: int, seconds: float) -> str:
    """Events per second, formatted."""
    return f"{n / seconds:,.0f} ev/s" if seconds > 0 else "inf"


def service_python() -> str:
    """The project's venv interpreter if there is one, else this one."""
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def child_env() -> dict[str, str]:
    """Environment for the children: PYTHONPATH at <repo>/service, no L3TOL1_* options."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("L3TOL1_")}
    # Drop L3TOL1_* so the caller's environment cannot change the options under test.
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO / "service") + (os.pathsep + old if old else "")
    return env


# Every measured child runs under this launcher, a small interpreter that forks and execs it
# and reports its rusage. Forked (or vforked) from this large process instead, a child's
# ru_maxrss would start at this process's own peak (Linux carries it over exec), which grows
# with the cases run before. The launcher also times the child itself, without its own start.
LAUNCHER = """
import os, signal, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(sig, lambda signum, frame: os.kill(pid, signum))
while True:
    try:
        _, status, usage = os.wait4(pid, 0)
        break
    except InterruptedError:
        continue
wall = time.perf_counter() - start
with open(sys.argv[1], "w") as report:
    report.write(f"{usage.ru_maxrss} {wall}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def spawn(cmd: list[str], report: Path, **popen: object) -> subprocess.Popen[bytes]:
    """Start cmd under the launcher; `wait_usage` reads its report."""
    report.unlink(missing_ok=True)
    exe = shutil.which(cmd[0]) or cmd[0]
    return subprocess.Popen(
        [sys.executable, "-S", "-c", LAUNCHER, str(report), exe, *cmd[1:]],
        env=child_env(),
        **popen,  # type: ignore[arg-type]
    )


def wait_usage(
    proc: subprocess.Popen[bytes], report: Path, timeout: float | None = None
) -> tuple[int, int, float]:
    """Wait for proc (started by `spawn`); return (exit code, the child's peak RSS in KiB,
    the child's wall time). SIGKILL the launcher and its child after timeout."""
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError, ValueError):
            child = int(Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()[0])
            os.kill(child, signal.SIGKILL)
        proc.kill()
        proc.wait()
    try:
        rss, wall = report.read_text().split()
    except (OSError, ValueError):
        return proc.returncode, 0, 0.0
    return proc.returncode, int(rss), float(wall)


def run_child(cmd: list[str], log_stem: Path) -> Proc:
    """Run cmd to completion; return wall time, peak RSS (from wait4) and exit code."""
    # Appended, not with_suffix: "x.service" and "x.naive" must not both become "x.stderr".
    out_log = log_stem.with_name(log_stem.name + ".stdout")
    err_log = log_stem.with_name(log_stem.name + ".stderr")
    report = log_stem.with_name(log_stem.name + ".usage")
    with open(out_log, "wb") as out, open(err_log, "wb") as err:
        proc = spawn(cmd, report, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        code, rss_kib, wall = wait_usage(proc, report)
    return Proc(wall, rss_kib, code, err_log)


def service_cmd(python: str, inp: Path, out: Path, *extra: str) -> list[str]:
    """The service command line used by every case."""
    return [
        python, "-m", "l3tol1", "-i", str(inp), "-o", str(out),
        "--log-format", "json", "--max-pending", "100000", *extra,
    ]  # fmt: skip


def summary_of(log: Path) -> dict[str, object]:
    """The service's final ``summary`` log line, if it wrote one."""
    found: dict[str, object] = {}
    with contextlib.suppress(OSError), open(log, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if '"summary"' in line:
                with contextlib.suppress(ValueError):
                    found = json.loads(line)
    return found


class Bench:
    """Inputs, outputs and runs of one benchmark session."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.python = args.python or service_python()
        self.report = Report()
        source = (BENCH / "generate.py").read_bytes()
        self.inputs = CACHE / f"inputs-{hashlib.sha1(source).hexdigest()[:10]}"
        # Naive outputs depend on the inputs and on naive.py.
        naive_src = (BENCH / "naive.py").read_bytes()
        self.naive_dir = self.inputs / f"naive-{hashlib.sha1(naive_src).hexdigest()[:10]}"
        self.out = CACHE / "out"
        if not self.inputs.exists():
            # Inputs of an older generate.py are stale and large (the 10M file is ~0.9 GB).
            for old in CACHE.glob("inputs-*"):
                shutil.rmtree(old, ignore_errors=True)
        for d in (self.inputs, self.naive_dir, self.out):
            d.mkdir(parents=True, exist_ok=True)

    def input(self, events: int, window: int, deep: bool = False, instruments: int = 0) -> Path:
        """Path of a generated input, generating it on first use."""
        kind = f"{'_deep' if deep else ''}{f'_i{instruments}' if instruments else ''}"
        name = f"l3_{events}_w{window}{kind}_s{self.args.seed}.csv"
        path = self.inputs / name
        if not path.exists():
            print(f"  generating {name} ...", end="", flush=True)
            start = time.perf_counter()
            partial = path.with_suffix(".partial")
            generate.generate(
                partial,
                events,
                seed=self.args.seed,
                window=window,
                deep=deep,
                instruments=instruments,
            )
            os.replace(partial, path)  # only complete files are ever cached
            print(f" {time.perf_counter() - start:.1f} s", flush=True)
        return path

    def service(
        self, case: str, inp: Path, events: int, *extra: str, out: Path | None = None
    ) -> tuple[Proc, Path]:
        """Run the service on inp with --no-follow; return the run and its output path."""
        out = out or self.out / f"{inp.stem}.service.csv"
        cmd = service_cmd(self.python, inp, out, "--no-follow", *extra)
        proc = run_child(cmd, out.with_name(out.name + ".run"))
        info = summary_of(proc.stderr)
        print(
            f"  service {inp.name}: {proc.wall:.2f} s, {rate(events, proc.wall)}, "
            f"peak RSS {proc.rss_mb:.1f} MB, exit {proc.code}, "
            f"rejects {info.get('rejects', '?')}, gaps {info.get('gaps_skipped', '?')}",
            flush=True,
        )
        if proc.code != 0:
            self.report.fail(
                case, f"service exit on {inp.name}", f"{proc.code} (see {proc.stderr})"
            )
        return proc, out

    def naive(
        self, case: str, inp: Path, events: int, force: bool = False
    ) -> tuple[Proc | None, Path]:
        """Run naive.py on inp, or reuse its cached output (then no timing: None)."""
        out = self.naive_dir / f"{inp.stem}.naive.csv"
        if out.exists() and not (force or self.args.rerun_naive):
            return None, out
        tmp = out.with_suffix(".partial")
        cmd = [self.python, str(BENCH / "naive.py"), str(inp), str(tmp)]
        proc = run_child(cmd, self.out / f"{inp.stem}.naive")
        print(
            f"  naive   {inp.name}: {proc.wall:.2f} s, {rate(events, proc.wall)}, "
            f"peak RSS {proc.rss_mb:.1f} MB, exit {proc.code}",
            flush=True,
        )
        if proc.code != 0:
            self.report.fail(case, f"naive exit on {inp.name}", str(proc.code))
            return proc, tmp
        os.replace(tmp, out)
        return proc, out

    def compare(
        self, case: str, service_out: Path, naive_out: Path, label: str = "output vs naive"
    ) -> None:
        """Record MATCH if the two files are byte-identical, else fail."""
        if service_out.exists() and filecmp.cmp(service_out, naive_out, shallow=False):
            self.report.add(case, label, "MATCH", "byte-identical", True)
        else:
            self.report.fail(case, label, f"MISMATCH ({service_out} vs {naive_out})")

    def compare_prefix(
        self, case: str, service_out: Path, naive_out: Path, last_seq: int, label: str
    ) -> None:
        """Check the rows of service_out up to last_seq equal the whole naive_out.

        The L1 row of event N depends on events up to N only, and a seed's event stream is
        the same whatever its length, so the naive output of a shorter input is exactly the
        beginning of the longer input's output.
        """
        ok = service_out.exists()
        if ok:
            with open(service_out, "rb") as big, open(naive_out, "rb") as small:
                for expected in small:
                    if big.readline() != expected:
                        ok = False
                        break
                else:
                    after = big.readline()  # the next row, if any, must be a later event
                    ok = not after or int(after.rsplit(b",", 1)[1]) > last_seq
        if ok:
            self.report.add(case, label, "MATCH", "byte-identical", True)
        else:
            self.report.fail(case, label, f"MISMATCH ({service_out} vs {naive_out})")

    # ----------------------------------------------------------------- cases

    def case_startup(self) -> None:
        """Case (s): start-up, `--version` and a one-row file, median of several runs, against
        the bare interpreter (the floor no Python program goes under)."""
        case = "startup"
        one_row = self.out / "startup.l3.csv"
        one_row.write_bytes(
            b"time,seq_num,add_order_id,add_side,add_price,add_qty,update_order_id,"
            b"update_side,update_price,update_qty,delete_order_id,delete_side,trade_order_id,"
            b"trade_side,trade_price,trade_qty\n"
            b"2024-01-02 09:30:00.000000001,1,1,BUY,10.5,3,,,,,,,,,,\n"
        )
        out = self.out / "startup.l1.csv"
        runs = {
            "bare interpreter (python -c pass)": [self.python, "-c", "pass"],
            "l3tol1 --version": [self.python, "-m", "l3tol1", "--version"],
            "one-row file": service_cmd(self.python, one_row, out, "--no-follow"),
        }
        r = self.report
        for label, cmd in runs.items():
            walls = []
            for _ in range(STARTUP_RUNS):
                proc = run_child(cmd, self.out / "startup")
                if proc.code != 0:
                    r.fail(case, label, f"exit {proc.code} (see {proc.stderr})")
                    return
                walls.append(proc.wall * 1000)
            walls.sort()
            median = walls[len(walls) // 2]
            shown = f"{median:.0f} ms (min {walls[0]:.0f}, max {walls[-1]:.0f})"
            if label.startswith("bare"):
                r.add(case, label, shown)
            else:
                ok = median <= TARGET_STARTUP_MS
                r.add(case, label, shown, f"<= {TARGET_STARTUP_MS:.0f} ms", ok)

    def case_1m(self) -> None:
        """Case (a): 1M events, window 20: compiled core, Python core and naive, one run."""
        case, n = "1m w20", self.size(1_000_000)
        inp = self.input(n, 20)
        svc, svc_out = self.service(case, inp, n)
        py, py_out = self.service(case, inp, n, "--core", "python", out=self.out / "1m.python.csv")
        # Run naive in this session even if cached: the ratio needs its time.
        nai, nai_out = self.naive(case, inp, n, force=True)
        assert nai is not None
        r = self.report
        work = float(summary_of(svc.stderr).get("events_per_s", 0) or 0)  # type: ignore[arg-type]
        r.add(case, "compiled: whole process", f"{svc.wall:.2f} s, {rate(n, svc.wall)}")
        r.add(case, "compiled: the work (summary)", f"{work:,.0f} ev/s",
              f">= {TARGET_WORK_RATE:,} ev/s", work >= TARGET_WORK_RATE)  # fmt: skip
        r.add(case, "compiled: peak RSS", f"{svc.rss_mb:.1f} MB", f"<= {TARGET_RSS_MB:.0f} MB",
              svc.rss_mb <= TARGET_RSS_MB)  # fmt: skip
        r.add(case, "python core: whole process", f"{py.wall:.2f} s, {rate(n, py.wall)}")
        r.add(case, "python core: peak RSS", f"{py.rss_mb:.1f} MB")
        r.add(case, "naive: whole process", f"{nai.wall:.2f} s, {rate(n, nai.wall)}")
        r.add(case, "naive: peak RSS", f"{nai.rss_mb:.1f} MB")
        ratio = nai.wall / svc.wall
        r.add(case, "naive time / compiled time", f"{ratio:.2f}x", f">= {TARGET_RATIO:.0f}x",
              ratio >= TARGET_RATIO)  # fmt: skip
        r.add(case, "naive time / python core time", f"{nai.wall / py.wall:.2f}x")
        r.add(case, "python core time / compiled time", f"{py.wall / svc.wall:.2f}x")
        self.compare(case, svc_out, nai_out)
        self.compare(case, py_out, nai_out, "python core output vs naive")

    def case_schemas(self) -> None:
        """Case: the output schemas beside l1, same input, same run (issue 19)."""
        case, n = "schemas 1m", self.size(1_000_000)
        inp = self.input(n, 20)
        r = self.report
        runs: dict[str, tuple[Proc, float]] = {}
        for schema in ("l1", *TARGET_SCHEMA_RATIO):
            out = self.out / f"{inp.stem}.{schema}.csv"
            proc, _ = self.service(case, inp, n, "--schema", schema, out=out)
            work = float(summary_of(proc.stderr).get("events_per_s", 0) or 0)  # type: ignore[arg-type]
            runs[schema] = (proc, work)
            r.add(case, f"{schema}: whole process", f"{proc.wall:.2f} s, {rate(n, proc.wall)}")
            r.add(case, f"{schema}: the work (summary)", f"{work:,.0f} ev/s")
            r.add(case, f"{schema}: peak RSS", f"{proc.rss_mb:.1f} MB")
        l1, l1_work = runs["l1"]
        for schema, target in TARGET_SCHEMA_RATIO.items():
            proc, work = runs[schema]
            whole = l1.wall / proc.wall
            r.add(case, f"{schema} / l1 rate: whole process", f"{whole:.2f}",
                  f">= {target}", whole >= target)  # fmt: skip
            if l1_work:
                r.add(case, f"{schema} / l1 rate: the work", f"{work / l1_work:.2f}")
        if not self.args.schemas_10m:
            r.add("schemas 10m", "peak RSS at 10M", "skipped (--schemas-10m)")
            return
        big = self.size(10_000_000)
        inp = self.input(big, 20)
        for schema in TARGET_SCHEMA_RATIO:
            out = self.out / f"{inp.stem}.{schema}.csv"
            proc, _ = self.service("schemas 10m", inp, big, "--schema", schema, out=out)
            growth = proc.rss_mb - runs[schema][0].rss_mb
            r.add("schemas 10m", f"{schema}: whole process", rate(big, proc.wall))
            r.add("schemas 10m", f"{schema}: peak RSS (1M: {runs[schema][0].rss_mb:.1f} MB)",
                  f"{proc.rss_mb:.1f} MB", f"<= 1M + {TARGET_SCHEMA_RSS_GROWTH_MB:.0f} MB",
                  growth <= TARGET_SCHEMA_RSS_GROWTH_MB)  # fmt: skip

    def case_10m(self) -> None:
        """Case (b): 10M events, window 20, service only (memory flatness)."""
        case, n, n_small = "10m w20", self.size(10_000_000), self.size(1_000_000)
        inp = self.input(n, 20)
        svc, svc_out = self.service(case, inp, n)
        r = self.report
        r.add(case, "compiled: whole process", rate(n, svc.wall))
        r.add(case, "compiled: peak RSS", f"{svc.rss_mb:.1f} MB", f"<= {TARGET_RSS_MB:.0f} MB",
              svc.rss_mb <= TARGET_RSS_MB)  # fmt: skip
        r.add(case, "naive", "skipped (would need ~9 GB)")
        _, nai_out = self.naive(case, self.input(n_small, 20), n_small)
        label = f"first rows vs naive {n_small:,}"
        self.compare_prefix(case, svc_out, nai_out, generate.SEQ_BASE + n_small - 1, label)

    def case_deep(self) -> None:
        """Case (c): deep book, marginal events/s at 600k against that at 60k."""
        # Marginal rate: a run's wall time is start-up (interpreter, imports, files) plus the
        # per-event work, so (N2 - N1) / (T2 - T1) cancels the start-up and leaves the steady
        # rate. The deep generator builds its ~5000 orders within the first ~10k events, so
        # the N1..N2 stretch runs on a full-depth book. The same figure on the shallow book
        # (same window, same sizes) is the yardstick: within 25% means the cost per event does
        # not grow with depth. A third figure takes N1 = a tiny run (start-up only).
        case = "deep w20"
        n1, n2 = self.size(60_000), self.size(600_000)
        tiny = max(n1 // 60, 100)
        walls: dict[tuple[bool, int], float] = {}
        outs: dict[tuple[bool, int], Path] = {}
        for deep in (True, False):
            for n in (tiny, n1, n2) if deep else (n1, n2):
                inp = self.input(n, 20, deep)
                svc, outs[deep, n] = self.service(case, inp, n)
                walls[deep, n] = svc.wall
        r = self.report

        def marginal(deep: bool, a: int, b: int) -> float:
            dt = walls[deep, b] - walls[deep, a]
            return (b - a) / dt if dt > 0 else float("inf")

        # The measure: the marginal rate out to N2 against the marginal rate up to N1
        # (both with start-up taken out) on the same deep book. The shallow book is context.
        deep_m = marginal(True, n1, n2)
        deep_early = marginal(True, tiny, n1)
        shallow_m = marginal(False, n1, n2)
        r.add(case, f"deep whole-run rate at {n2:,}", rate(n2, walls[True, n2]))
        r.add(case, f"deep marginal {tiny:,}->{n1:,}", f"{deep_early:,.0f} ev/s")
        r.add(case, f"deep marginal {n1:,}->{n2:,}", f"{deep_m:,.0f} ev/s")
        ratio = deep_m / deep_early
        r.add(case, f"deep marginal at {n2:,} / at {n1:,}", f"{ratio:.2f}",
              f">= {1 - TARGET_DEEP:.2f}", ratio >= 1 - TARGET_DEEP)  # fmt: skip
        r.add(case, f"shallow marginal {n1:,}->{n2:,}", f"{shallow_m:,.0f} ev/s")
        r.add(case, "deep/shallow marginal (context)", f"{deep_m / shallow_m:.2f}")
        # Correctness on the deep book: naive (slow here: it scans ~3000 levels per event) on
        # the N1 input, which is also the first part of the N2 output.
        for deep in (True, False):
            book = "deep" if deep else "shallow"
            _, nai_out = self.naive(case, self.input(n1, 20, deep), n1)
            self.compare(case, outs[deep, n1], nai_out, f"{book} {n1:,} output vs naive")
            label = f"{book} {n2:,} first rows vs naive {n1:,}"
            self.compare_prefix(case, outs[deep, n2], nai_out, generate.SEQ_BASE + n1 - 1, label)

    def case_follow(self) -> None:
        """Case (d): --follow latency from append to visible L1 row, then SIGTERM."""
        case = "follow"
        ev_rate = self.args.follow_rate
        seconds = self.args.follow_seconds or (2.0 if self.args.quick else 10.0)
        total = int(ev_rate * seconds)
        src = self.input(total, 0)
        _, nai_out = self.naive(case, src, total)
        with open(nai_out, "rb") as fh:
            expected_rows = sum(1 for _ in fh) - 1
        # One bytes object and an array of line offsets, not a list of lines: large single
        # allocations go back to the system when freed, so the children forked by later cases
        # do not start with (and report in their peak RSS) this case's memory.
        data_all = src.read_bytes()
        ends = array("q", [0])
        cut = data_all.find(b"\n") + 1
        ends[0] = cut
        header = data_all[:cut]
        while cut < len(data_all):
            cut = data_all.index(b"\n", cut) + 1
            ends.append(cut)
        inp = self.out / "follow.l3.csv"
        out = self.out / "follow.l1.csv"
        for stale in (inp, out, out.with_name(out.name + ".rejects.jsonl")):
            stale.unlink(missing_ok=True)
        inp.write_bytes(header)

        appended = array("d", bytes(8 * total))  # monotonic time each row was appended
        seen_row = array("q")  # the row index of each L1 row seen,
        seen_at = array("d")  # and the monotonic time it appeared in the output
        stop_tail = threading.Event()

        def tail() -> None:
            # Poll the output for new complete lines; a row is "seen" when it is in the file.
            while not out.exists() and not stop_tail.is_set():
                time.sleep(0.002)
            pos, buf = 0, b""
            while True:
                with contextlib.suppress(FileNotFoundError), open(out, "rb") as fh:
                    if os.fstat(fh.fileno()).st_size < pos:
                        pos, buf = 0, b""  # rewritten from the start
                    fh.seek(pos)
                    data = fh.read()
                    pos += len(data)
                    if data:
                        now = time.monotonic()
                        buf += data
                        *complete, buf = buf.split(b"\n")
                        for row in complete:
                            if row and not row.startswith(b"time,"):
                                seen_row.append(int(row.rsplit(b",", 1)[1]) - generate.SEQ_BASE)
                                seen_at.append(now)
                        continue
                if stop_tail.is_set():
                    return
                time.sleep(0.002)

        # --start-seq: without it a following service waits --gap-timeout (2 s) for earlier
        # rows before it picks its first seq (SPEC section 5), a one-off start-up cost that
        # would swamp the steady-state latency measured here.
        cmd = service_cmd(
            self.python, inp, out, "--follow", "-t", "0.05", "--gap-timeout", "2",
            "--start-seq", str(generate.SEQ_BASE),
        )  # fmt: skip
        err_log = self.out / "follow.stderr"
        report = self.out / "follow.usage"
        with open(err_log, "wb") as err:
            proc = spawn(cmd, report, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        tailer = threading.Thread(target=tail, daemon=True)
        tailer.start()
        # Let the service start (it creates the output when ready) so start-up is not counted.
        deadline = time.monotonic() + 5
        while not out.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.01)
        time.sleep(0.2)

        print(f"  appending {total:,} rows at {ev_rate:,} ev/s ...", flush=True)
        fd = os.open(inp, os.O_WRONLY | os.O_APPEND)
        try:
            start = time.monotonic()
            sent = 0
            data = memoryview(b"")
            while sent < total and proc.poll() is None:
                due = min(total, int((time.monotonic() - start) * ev_rate) + 1)
                if due > sent:
                    data = memoryview(data_all)[ends[sent] : ends[due]]
                    while data:
                        data = data[os.write(fd, data) :]
                    now = time.monotonic()
                    appended[sent:due] = array("d", [now]) * (due - sent)
                    sent = due
                time.sleep(0.01)  # chunks every ~10 ms
            append_time = time.monotonic() - start
        finally:
            os.close(fd)

        # Wait for the last L1 row, then stop the service the way an operator would.
        deadline = time.monotonic() + 15
        while len(seen_row) < expected_rows and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        t_term = time.monotonic()
        code, rss_kib, _ = wait_usage(proc, report, timeout=15)
        term_s = time.monotonic() - t_term
        stop_tail.set()
        tailer.join(5)

        r = self.report
        del data_all, data  # see above
        seen = list(zip(seen_row, seen_at, strict=True))
        lat = sorted(t - appended[i] for i, t in seen if 0 <= i < total and appended[i])
        r.add(case, "appended", f"{sent:,} rows in {append_time:.1f} s ({rate(sent, append_time)})")
        r.add(case, "L1 rows seen", f"{len(seen):,} of {expected_rows:,}")
        if lat:
            p50 = lat[len(lat) // 2] * 1000
            p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
            r.add(case, "latency p50", f"{p50:.1f} ms")
            r.add(case, "latency p99", f"{p99:.1f} ms", f"<= {TARGET_P99_MS:.0f} ms",
                  p99 <= TARGET_P99_MS)  # fmt: skip
            r.add(case, "latency max", f"{lat[-1] * 1000:.1f} ms")
        else:
            r.fail(case, "latency", "no L1 row seen")
        r.add(case, "service peak RSS", f"{rss_kib / 1024:.1f} MB")
        if code == 0:
            r.add(case, "exit after SIGTERM", f"0 in {term_s:.2f} s", "0", True)
        else:
            r.fail(case, "exit after SIGTERM", f"{code} (see {err_log})")
        self.compare(case, out, nai_out)

    def case_checkpoint(self) -> None:
        """Case (e): a checkpoint with --max-pending events waiting behind one missing seq:
        its size, the time to write it, and the peak RSS of a resume against a normal run."""
        case = "checkpoint"
        n = self.size(100_000)
        full = self.input(n, 0)  # n - 11 of them wait: just under --max-pending
        src = self.out / "checkpoint.l3.csv"
        with open(full, "rb") as fh, open(src, "wb") as out:
            out.write(fh.readline())
            for i, line in enumerate(fh):
                if i != 10:  # seq SEQ_BASE + 10 never comes: everything after it waits
                    out.write(line)
        ckpt = self.out / "checkpoint.ckpt"
        out = self.out / "checkpoint.l1.csv"
        ckpt.unlink(missing_ok=True)
        cmd = service_cmd(
            self.python, src, out, "--follow", "--gap-timeout", "3600", "--start-seq",
            str(generate.SEQ_BASE), "--checkpoint", str(ckpt),
        )  # fmt: skip
        r = self.report
        runs = {}
        for label in ("first run", "resume"):
            err_log = self.out / f"checkpoint.{label.replace(' ', '_')}.stderr"
            report = err_log.with_suffix(".usage")
            with open(err_log, "wb") as err:
                started = time.monotonic()
                proc = spawn(cmd, report, stdin=subprocess.DEVNULL, stderr=err)
            while b"end_of_input_reached" not in err_log.read_bytes() and proc.poll() is None:
                time.sleep(0.01)
            ready = time.monotonic() - started
            proc.send_signal(signal.SIGTERM)
            code, rss_kib, _ = wait_usage(proc, report, timeout=60)
            info = summary_of(err_log)
            runs[label] = rss_kib / 1024
            if code != 0:
                r.fail(case, f"{label} exit", f"{code} (see {err_log})")
                return
            r.add(case, f"{label}: events waiting", f"{info.get('pending', '?'):,}")
            r.add(case, f"{label}: read to the end in", f"{ready:.2f} s")
            r.add(case, f"{label}: peak RSS", f"{rss_kib / 1024:.1f} MB")
            r.add(
                case,
                f"{label}: last checkpoint",
                f"{int(info.get('checkpoint_bytes', 0)) / 1e6:.2f} MB written in "
                f"{float(info.get('checkpoint_seconds', 0)) * 1000:.0f} ms",
            )
        r.add(case, "resume peak / first run peak", f"{runs['resume'] / runs['first run']:.2f}")

    def case_instruments(self) -> None:
        """Case (f): 1M events over 1,000 instruments against 1M over one, in the same run,
        and against the naive per-instrument reference; then the same 1,000 instruments with a
        disorder window of 100 (more events waiting in the resequencer)."""
        case, n = "1000 instruments", self.size(1_000_000)
        one = self.input(n, 20)
        single, _ = self.service(case, one, n)
        r = self.report
        r.add(case, "one instrument rate", rate(n, single.wall))
        for window in (20, 100):
            many = self.input(n, window, instruments=1000)
            svc, svc_out = self.service(case, many, n)
            nai, nai_out = self.naive(case, many, n, force=True)
            assert nai is not None
            w = f"window {window}: "
            r.add(case, w + "1,000 instruments rate", rate(n, svc.wall))
            r.add(case, w + "rate vs one instrument", f"{single.wall / svc.wall:.2f}")
            r.add(case, w + "1,000 instruments peak RSS", f"{svc.rss_mb:.1f} MB")
            r.add(case, w + "naive per-instrument rate", rate(n, nai.wall))
            ratio, target = nai.wall / svc.wall, TARGET_INSTRUMENTS_RATIO
            r.add(case, w + "naive time / compiled time", f"{ratio:.2f}x",
                  f">= {target:.0f}x", ratio >= target)  # fmt: skip
            self.compare(case, svc_out, nai_out)

    def case_formats(self) -> None:
        """Case (g): gzip and zstd input, Parquet output, against plain CSV in and out."""
        case, n = "formats", self.size(1_000_000)
        plain = self.input(n, 20)
        base, base_out = self.service(case, plain, n)
        r = self.report
        r.add(case, "plain CSV in, CSV out", rate(n, base.wall))
        data = plain.read_bytes()
        for codec, suffix in (("gzip", "gz"), ("zstd", "zst")):
            packed = self.out / f"{plain.name}.{suffix}"
            if not packed.exists():
                if codec == "gzip":
                    import gzip

                    packed.write_bytes(gzip.compress(data, compresslevel=6))
                else:
                    import zstandard

                    packed.write_bytes(zstandard.ZstdCompressor(level=3).compress(data))
            svc, out = self.service(case, packed, n, out=self.out / f"{packed.name}.csv")
            share = packed.stat().st_size / len(data)
            r.add(case, f"{codec} in ({share:.0%} of the size), CSV out",
                  rate(n, svc.wall))  # fmt: skip
            self.compare(case, out, base_out, f"{codec} output vs plain")
        dataset = self.out / f"{plain.stem}.parquet"
        shutil.rmtree(dataset, ignore_errors=True)
        svc, _ = self.service(case, plain, n, out=dataset)
        r.add(case, "plain CSV in, Parquet out", rate(n, svc.wall))
        r.add(case, "Parquet peak RSS / CSV peak RSS", f"{svc.rss_mb:.1f} / {base.rss_mb:.1f} MB")
        size = sum(p.stat().st_size for p in dataset.glob("*.parquet"))
        r.add(case, "Parquet size / CSV size", f"{size / base_out.stat().st_size:.0%}")

    def case_mbo(self) -> None:
        """Case (h): Databento MBO, a synthetic 1M-record .dbn.zst of eight books (two
        publishers), the service against the naive MBO reference in the same run; then a
        1.1M-record one of 50 instruments (one publisher). Each beside Databento's own decoder
        decoding the same file into Python records, nothing else (bench/decode_dbn.py, a
        process timed as the service is)."""
        case, n = "mbo", self.size(1_000_000)
        src = self.mbo_input(case, n, "--publishers", "2")
        if src is None:
            return
        svc, svc_out = self.service(case, src, n)
        nai_out = self.out / f"{src.name}.naive.csv"
        nai = run_child(
            [self.python, str(BENCH / "naive_mbo.py"), str(src), str(nai_out)],
            self.out / "mbo.naive",
        )
        r = self.report
        work = float(summary_of(svc.stderr).get("events_per_s", 0) or 0)  # type: ignore[arg-type]
        r.add(case, "compiled: whole process", f"{n / svc.wall:,.0f} records/s")
        r.add(case, "compiled: the work (summary)", f"{work:,.0f} records/s",
              f">= {TARGET_MBO_RATE:,}", work >= TARGET_MBO_RATE)  # fmt: skip
        r.add(case, "compiled: peak RSS", f"{svc.rss_mb:.1f} MB")
        self.mbo_decode(case, src, svc, "8 books")
        r.add(case, "naive rate", f"{n / nai.wall:,.0f} records/s")
        r.add(case, "naive peak RSS", f"{nai.rss_mb:.1f} MB")
        r.add(case, "naive time / compiled time", f"{nai.wall / svc.wall:.2f}x")
        self.compare(case, svc_out, nai_out)
        n = self.size(1_100_000)
        src = self.mbo_input(case, n, "--instruments", "50", name=f"mbo_{n}_i50")
        if src is None:
            return
        svc, _ = self.service(case, src, n)
        r.add(case, "50 instruments: whole process", f"{n / svc.wall:,.0f} records/s")
        self.mbo_decode(case, src, svc, "50 instruments")

    def mbo_input(self, case: str, n: int, *args: str, name: str = "") -> Path | None:
        """The cached synthetic .dbn.zst of ``n`` records (generate_mbo.py ``args``, a bad
        record in about 10,000), made if missing; None if it could not be."""
        src = self.inputs / f"{name or f'mbo_{n}'}_s{self.args.seed}.dbn.zst"
        if not src.exists():
            print(f"  generating {src.name} ...", flush=True)
            partial = src.with_suffix(".partial")
            # In a child: the records are built in memory, and a child forked from a large
            # process would report its size as the service's peak RSS.
            made = run_child(
                [self.python, str(BENCH / "generate_mbo.py"), "--records", str(n), "--seed",
                 str(self.args.seed), "--zstd", "--bad-every", "10000", *args,
                 "-o", str(partial)],
                self.out / "mbo.generate",
            )  # fmt: skip
            if made.code != 0:
                self.report.fail(case, "generate", f"exit {made.code}")
                return None
            os.replace(partial, src)
        return src

    def mbo_decode(self, case: str, src: Path, svc: Proc, what: str) -> None:
        """Databento's decoder alone on ``src``, and the service's time over it (``svc``)."""
        dec = run_child(
            [self.python, str(BENCH / "decode_dbn.py"), str(src)], self.out / "mbo.decode"
        )
        if dec.code != 0:
            self.report.fail(case, f"decode_dbn exit on {src.name}", str(dec.code))
            return
        ratio = svc.wall / dec.wall
        print(f"  decode  {src.name}: {dec.wall:.2f} s, peak RSS {dec.rss_mb:.1f} MB", flush=True)
        self.report.add(case, f"{what}: decode only (databento_dbn)", f"{dec.wall:.2f} s")
        self.report.add(
            case,
            f"{what}: whole process / decode only",
            f"{svc.wall:.2f} s / {dec.wall:.2f} s = {ratio:.2f}x",
            f"<= {TARGET_MBO_DECODE_RATIO:g}x",
            ratio <= TARGET_MBO_DECODE_RATIO,
        )

    def case_instructions(self) -> None:
        """Case (i): instructions per event, Python core and compiled core, counted by
        valgrind (callgrind) on 100k and 10k events: the difference over 90k events takes
        start-up out. Slow (valgrind runs ~50x slower); skipped without valgrind."""
        case = "instructions"
        if shutil.which("valgrind") is None:
            self.report.add(case, "skipped", "valgrind not found")
            return
        small, big = self.size(10_000), self.size(100_000)
        counts: dict[tuple[str, int], int] = {}
        for core in ("python", "compiled"):
            for n in (small, big):
                inp = self.input(n, 20)
                stem = self.out / f"callgrind.{core}.{n}"
                cmd = [
                    "valgrind", "--tool=callgrind", f"--callgrind-out-file={stem}.out",
                    *service_cmd(self.python, inp, Path(f"{stem}.csv"), "--no-follow",
                                 "--core", core),
                ]  # fmt: skip
                proc = run_child(cmd, stem)
                total = re.search(rb"Collected : (\d+)", proc.stderr.read_bytes())
                if proc.code != 0 or total is None:
                    self.report.fail(case, f"callgrind {core} {n:,}", f"see {proc.stderr}")
                    return
                counts[core, n] = int(total.group(1))
        for core in ("python", "compiled"):
            per = (counts[core, big] - counts[core, small]) / (big - small)
            self.report.add(case, f"{core} core: instructions per event", f"{per:,.0f}")
            self.report.add(case, f"{core} core: start-up instructions",
                            f"{(counts[core, small] - per * small) / 1e6:,.0f} M")  # fmt: skip

    def case_jetstream(self) -> None:
        """Case (j): the NATS JetStream roles (SPEC §13) on one local server: publish alone,
        then the whole chain (publish -> 2 workers -> collect, all running at once) against the
        file job on the same input, for one instrument and for 1,000."""
        case, n = "jetstream", self.size(1_000_000)
        server_bin = Path(self.python).parent / "nats-server"
        if not server_bin.exists():
            self.report.add(case, "skipped", "nats-server not installed (pip install .[test])")
            return
        for label, inp in (("1 instrument", self.input(n, 20)),
                           ("1,000 instruments", self.input(n, 20, instruments=1000))):  # fmt: skip
            store = self.out / "nats-store"
            shutil.rmtree(store, ignore_errors=True)
            with contextlib.closing(__import__("socket").socket()) as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            server = subprocess.Popen(
                [str(server_bin), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                self._jetstream_run(case, label, inp, n, f"nats://127.0.0.1:{port}")
            finally:
                server.terminate()
                server.wait(30)
                shutil.rmtree(store, ignore_errors=True)

    def _jetstream_run(self, case: str, label: str, inp: Path, n: int, url: str) -> None:
        nats = ["--nats-url", url, "--log-format", "json"]
        pending = ["--max-pending", "100000"]  # an option of publish alone (it resequences)
        base = [self.python, "-m", "l3tol1"]
        r = self.report
        file_out = self.out / "js.file.csv"
        rejects = ["--reject-file", str(self.out / "js.rejects.jsonl")]
        # Each role alone, under --feed a: publish (the stream then holds the whole feed);
        # 2 workers over the full L3 stream, a collector behind them (timed from the workers'
        # launch, their start-up included); a second collector over the full L1 stream.
        pub = run_child([*base, "publish", "-i", str(inp), "--no-follow", "--feed", "a",
                         *rejects, *pending, *nats], self.out / "js.publish")  # fmt: skip
        collect_a = [*base, "collect", "--feed", "a", "--no-follow", *nats, "-o"]
        behind = self._role([*collect_a, str(self.out / "js.a.csv")], "js.collect.a")
        self._wait_logged(behind, '"start"')
        started = time.perf_counter()
        workers = [self._role([*base, "work", "--feed", "a", *nats], f"js.work.a{i}")
                   for i in range(2)]  # fmt: skip
        code_a = behind[0].wait(600)
        work = time.perf_counter() - started
        collect = run_child([*collect_a, str(self.out / "js.a2.csv")], self.out / "js.collect.a2")
        self._stop(workers)
        # The whole chain against the file job, three times each, alternating (so that a
        # slower moment of the machine weighs on both): medians. The chain runs under a new
        # feed each time, workers and collector started first (as services are) and waiting
        # for the feed; timed from the publisher's launch to the collector's last row.
        file_walls, chains, codes = [], [], [pub.code, code_a, collect.code]
        out = self.out / "js.chain.csv"
        for run in range(3):
            file_walls.append(self.service(case, inp, n, out=self.out / "js.file.csv")[0].wall)
            chain, code = self._chain(base, nats, inp, f"b{run}", out, [*rejects, *pending])
            chains.append(chain)
            codes.append(code)
        if any(codes):
            r.fail(case, f"{label}: a role failed", f"exit codes {codes}")
            return
        file_wall, chain = sorted(file_walls)[1], sorted(chains)[1]
        r.add(case, f"{label}: file job (median of 3)", rate(n, file_wall))
        r.add(case, f"{label}: publish alone", rate(n, pub.wall))
        r.add(case, f"{label}: work alone (2 workers, with start-up)", rate(n, work))
        r.add(case, f"{label}: collect alone (with start-up)", rate(n, collect.wall))
        r.add(case, f"{label}: whole chain, 2 workers (median of 3)", rate(n, chain))
        share = file_wall / chain
        r.add(case, f"{label}: chain / file job", f"{share:.2f}", ">= 0.50", share >= 0.5)
        if label.startswith("1 "):
            self.compare(case, out, file_out, f"{label}: chain output vs file job")

    def _chain(
        self, base: list[str], nats: list[str], inp: Path, feed: str, out: Path,
        publish_options: list[str],
    ) -> tuple[float, int]:  # fmt: skip
        """One run of publish -> 2 workers -> collect under ``feed``: seconds, exit status."""
        workers = [self._role([*base, "work", "--feed", feed, *nats], f"js.work.{feed}.{i}")
                   for i in range(2)]  # fmt: skip
        collector = self._role([*base, "collect", "--feed", feed, "-o", str(out),
                                "--no-follow", *nats], f"js.collect.{feed}")  # fmt: skip
        for role in (*workers, collector):
            self._wait_logged(role, "waiting_for_feed")
        started = time.perf_counter()
        publish = [*base, "publish", "-i", str(inp), "--no-follow", "--feed", feed,
                   *publish_options]  # fmt: skip
        pub = run_child([*publish, *nats], self.out / f"js.pub.{feed}")
        code = collector[0].wait(600)
        chain = time.perf_counter() - started
        self._stop(workers)
        return chain, pub.code or code

    def _role(self, cmd: list[str], name: str) -> tuple[subprocess.Popen[bytes], Path]:
        """A long-running role, its stderr (JSON log lines) in a file."""
        log = self.out / f"{name}.stderr"
        with open(log, "wb") as err:
            proc = subprocess.Popen(cmd, env=child_env(), stdout=subprocess.DEVNULL, stderr=err)
        return proc, log

    @staticmethod
    def _wait_logged(role: tuple[subprocess.Popen[bytes], Path], text: str) -> None:
        proc, log = role
        deadline = time.monotonic() + 120
        while text not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{log}: no {text} (exit {proc.returncode})")
            time.sleep(0.01)

    @staticmethod
    def _stop(roles: list[tuple[subprocess.Popen[bytes], Path]]) -> None:
        for proc, _ in roles:
            proc.send_signal(signal.SIGTERM)
        for proc, _ in roles:
            proc.wait(30)

    def size(self, n: int) -> int:
        """A case size, divided by 10 under --quick."""
        return n // 10 if self.args.quick else n


def main(argv: list[str] | None = None) -> int:
    """Run the selected cases and print the table."""
    parser = argparse.ArgumentParser(description="l3tol1 benchmark (see module docstring)")
    parser.add_argument("--quick", action="store_true", help="10x smaller sizes, a smoke run")
    parser.add_argument(
        "--cases", default=",".join(ALL_CASES), help=f"comma list of {', '.join(ALL_CASES)}"
    )
    parser.add_argument("--seed", type=int, default=1, help="generator seed")
    parser.add_argument("--python", help="interpreter for service and naive (default: venv)")
    parser.add_argument("--follow-rate", type=int, default=50_000, help="events/s appended")
    parser.add_argument("--follow-seconds", type=float, help="append duration (10 s, quick 2 s)")
    parser.add_argument("--rerun-naive", action="store_true", help="ignore cached naive output")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--schemas-10m", action="store_true", help="schemas case: mbp-1, mbp-10 at 10M too"
    )
    args = parser.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(cases) - set(ALL_CASES))
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(ALL_CASES)}")
    if not (REPO / "service" / "l3tol1" / "__main__.py").exists():
        print("service/l3tol1/__main__.py not found: nothing to benchmark", file=sys.stderr)
        return 2

    # Byte-code compiled once, as an installed package is, so that no run pays for it.
    subprocess.run(
        [args.python or service_python(), "-m", "compileall", "-q", str(REPO / "service")],
        check=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
    )
    bench = Bench(args)
    print(f"python {bench.python}; inputs in {bench.inputs.relative_to(REPO)}", flush=True)
    for name in ALL_CASES:
        if name in cases:
            print(f"case {name}{' (quick)' if args.quick else ''}:", flush=True)
            getattr(bench, f"case_{name}")()
    bench.report.print_table()
    if bench.report.failed:
        print("\nFAILED: a mismatch or a failed run (see above)")
        return 1
    if args.strict and bench.report.missed:
        print("\nMISSED: a target was not met (--strict)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
