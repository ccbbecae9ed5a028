"""Fault injection, black-box: `runner sweep` subprocesses killed at chosen points, two sweeps
into one output.dir, SIGTERM, and a worker node lost mid-sweep. After each, the dataset is read
by pyarrow, DuckDB and pandas: every file readable, no item lost or duplicated, no temporary
file visible to readers.

The sweeps run against a `ray start` head of their own (tests/e2e/raycluster.py), so a killed
driver leaves nothing of this machine's other Ray processes touched, and each restart skips
starting a local Ray.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from tests.e2e.raycluster import LocalRayCluster, running_cluster

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def head():
    with running_cluster("rf-", cpus_per_node=2, workers=0) as c:
        yield c


class Sweep:
    """`runner sweep` in a subprocess, its output lines collected as they come."""

    def __init__(self, env: dict, args: list[str]):
        self.lines: list[str] = []
        self.p = subprocess.Popen([sys.executable, "-m", "runner.cli", "sweep", *args], cwd=REPO, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.p.stdout:
            self.lines.append(line.rstrip("\n"))

    def saw(self, pattern: str) -> bool:
        return any(re.search(pattern, line) for line in list(self.lines))

    def wait(self, timeout: float = 600) -> int:
        rc = self.p.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return rc

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


def _parquet_files(out: Path) -> list[Path]:
    return sorted(out.glob("scenario=*/*.parquet"))


def _temporaries(out: Path) -> list[Path]:
    return sorted(out.glob("scenario=*/.tmp-*"))


def _kill_when(sweep: Sweep, ready, timeout: float = 420, sig=signal.SIGKILL) -> bool:
    """Signal the sweep once `ready()` holds; False if it ended first (the point was not reached)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if sweep.p.poll() is not None:
            return False
        if ready():
            sweep.p.send_signal(sig)
            sweep.wait()
            return True
        time.sleep(0.005)
    sweep.p.kill()
    raise AssertionError(f"kill point not reached within {timeout}s:\n{sweep.output[-3000:]}")


def check_dataset(out: Path, expected_items: int) -> dict:
    """Read the dataset three ways; count items, ok rows, duplicate ok rows, unreadable files."""
    import duckdb
    import pandas as pd

    files = _parquet_files(out)
    unreadable = 0
    for f in files:
        try:
            pq.read_table(f)
        except Exception:  # noqa: BLE001 -- counted, and asserted to be zero
            unreadable += 1
    t = ds.dataset(str(out), partitioning="hive").to_table(columns=["item_id", "status"])
    ids = [i for i, s in zip(t["item_id"].to_pylist(), t["status"].to_pylist()) if s == "ok"]
    con = duckdb.connect()
    duck = con.execute(f"SELECT count(*), count(DISTINCT item_id) FROM read_parquet('{out}/**/*.parquet', "
                       "hive_partitioning=true) WHERE status = 'ok'").fetchone()
    frame = pd.read_parquet(out)
    counts = {"items": len(set(ids)), "ok_rows": len(ids), "duplicates": len(ids) - len(set(ids)),
              "unreadable_files": unreadable, "files": len(files), "temporaries_left": len(_temporaries(out)),
              "duckdb_ok_rows": duck[0], "pandas_rows": len(frame)}
    assert unreadable == 0, counts
    assert counts["items"] == expected_items and counts["duplicates"] == 0, counts
    assert duck == (len(ids), len(set(ids))) and len(frame) == t.num_rows, counts
    return counts


def test_driver_sigkill_at_ten_points_then_concurrent_run_refused_and_sigterm(head, random_run, tmp_path):
    out = tmp_path / "results"
    env = {**head.env, "RAY_ADDRESS": head.gcs_address}
    args = [f"models.0.path={random_run}", f"output.dir={out}", "sampling.seeds=4", "sampling.max_tokens=24",
            "scenarios.families=[blackmail]", "generation.batch_size=4", "generation.num_actors=2",
            "wandb.mode=offline", "wandb.transcripts_per_checkpoint=2"]
    expected = 3 * 4 * 4  # checkpoints x conditions x seeds
    start_files = lambda: len(_parquet_files(out))  # noqa: E731

    base = {}

    def files_grew(n: int):
        return lambda: len(_parquet_files(out)) >= base["files"] + n

    points = [
        ("at start (0.3 s)", lambda s: (lambda t0=time.monotonic(): lambda: time.monotonic() - t0 > 0.3)()),
        ("lock taken, before Ray", lambda s: lambda: (out / "_lock").exists() and str(s.p.pid) in _read(out / "_lock")),
        ("pools created, engines starting", lambda s: lambda: s.saw(r"generation engine\(s\)")),
        ("first batch written", lambda s: files_grew(1)),
        # Caught while a temporary file exists when the poll is quick enough, else after a write.
        ("during a Parquet write", lambda s: lambda: bool(_temporaries(out)) or files_grew(3)()),
        ("mid generation", lambda s: files_grew(2)),
        ("W&B run files written", lambda s: lambda: any((out / "_wandb").rglob("*.wandb")) and files_grew(1)()),
        ("just after a checkpoint's metrics went to W&B", lambda s: lambda: s.saw(r"\(step \d+\): harmful")),
        ("mid generation, later", lambda s: files_grew(1)),
        ("at the end (summary printed)", lambda s: lambda: s.saw(r"^done in")),
    ]
    report = []

    def kill_at(name, make) -> None:
        base["files"] = start_files()
        s = Sweep(env, args)
        reached = _kill_when(s, make(s))
        rows = sum(pq.read_metadata(f).num_rows for f in _parquet_files(out))
        report.append(f"SIGKILL {name}: {'killed' if reached else 'run ended first'} (rc {s.p.returncode}), "
                      f"{rows} rows on disk, {len(_temporaries(out))} temporary files")
        assert reached, s.output[-3000:]
        # Readers never see a temporary file, whatever the moment of the kill.
        assert not any(f.name.startswith(".") for f in _parquet_files(out))

    for name, make in points[:-1]:
        kill_at(name, make)

    # Two sweeps into one output.dir: the second refuses while the first lives.
    first = Sweep(env, args)
    deadline = time.monotonic() + 120
    while not ((out / "_lock").exists() and str(first.p.pid) in _read(out / "_lock")):
        assert first.p.poll() is None and time.monotonic() < deadline, first.output[-2000:]
        time.sleep(0.05)
    second = subprocess.run([sys.executable, "-m", "runner.cli", "sweep", *args], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 2, second.stderr
    assert second.stderr.strip().splitlines() == [second.stderr.strip()]
    assert f"is being written by another run (pid {first.p.pid}" in second.stderr
    assert first.p.poll() is None  # the first run goes on
    report.append(f"concurrent run: exit {second.returncode}: {second.stderr.strip()}")

    # SIGTERM behaves like Ctrl-C: finished batches kept, one line, no traceback, status 143.
    files_before = start_files()
    assert _kill_when(first, files_grew_from(out, files_before), sig=signal.SIGTERM), first.output[-3000:]
    assert first.p.returncode == 128 + signal.SIGTERM, first.output[-3000:]
    assert "interrupted; finished batches are saved" in first.output and "Traceback" not in first.output
    assert start_files() > files_before and not (out / "_lock").exists()  # kept; the lock went with it
    report.append(f"SIGTERM: exit {first.p.returncode}, {start_files() - files_before} new file(s) kept, "
                  f"{sum(pq.read_metadata(f).num_rows for f in _parquet_files(out))} rows on disk")

    kill_at(*points[-1])

    # A lock left by a SIGKILLed run never blocks: the next run completes the sweep.
    last = Sweep(env, args)
    assert last.wait() == 0, last.output[-3000:]
    counts = check_dataset(out, expected)
    assert counts["temporaries_left"] == 0
    assert re.search(r"done in .*: 0 new rows", last.output), last.output[-2000:]  # all done before the last kill
    report.append(f"final: {counts}")
    print("\n" + "\n".join(report))


def files_grew_from(out: Path, n: int):
    return lambda: len(_parquet_files(out)) > n


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def test_node_loss_mid_sweep_loses_nothing(random_run, tmp_path):
    """R1: the worker node hosting a generation engine is lost mid-sweep; the engine restarts on the
    spare node and the sweep completes with every item ok and no duplicate row."""
    temp = Path(tempfile.mkdtemp(prefix="rn-", dir="/tmp"))
    cluster = LocalRayCluster(temp, cpus_per_node=1)
    cluster.start(workers=2)   # head + 2 workers, one CPU each: 2 engines and one spare CPU
    try:
        out = tmp_path / "results"
        env = {**cluster.env, "RAY_ADDRESS": cluster.gcs_address}
        args = [f"models.0.path={random_run}", f"output.dir={out}", "sampling.seeds=4", "sampling.max_tokens=24",
                "scenarios.families=[blackmail]", "generation.batch_size=4", "generation.num_actors=2",
                "wandb.mode=disabled"]
        s = Sweep(env, args)
        deadline = time.monotonic() + 420
        while not _parquet_files(out):
            assert s.p.poll() is None and time.monotonic() < deadline, s.output[-3000:]
            time.sleep(0.2)
        roles = cluster.node_ids()
        alive = [a for a in cluster.actors("GenerationActor") if a["state"] == "ALIVE"]
        victim = next(a["node_id"] for a in alive if roles.get(a["node_id"]) == "worker")
        rows_before = sum(pq.read_metadata(f).num_rows for f in _parquet_files(out))
        cluster.kill_node(victim)
        rc = s.wait(timeout=900)
        assert rc == 0, s.output[-4000:]
        counts = check_dataset(out, 3 * 4 * 4)
        placed = [(a["node_id"][:8], roles.get(a["node_id"], "?"), a["state"]) for a in cluster.actors("GenerationActor")]
        print(f"\nR1 node loss: killed node {victim[:8]} after {rows_before} rows; actors {placed}; {counts}; "
              f"nodes restarted at cluster start: {cluster.restarts}; "
              f"{[line for line in s.lines if 'resubmitted' in line]}")
    finally:
        cluster.stop()
        shutil.rmtree(temp, ignore_errors=True)


def _session_processes(driver_pid: int, temp: Path) -> list:
    """The driver's descendants and every process naming the session's temp dir, found without
    the runner's own bookkeeping (Ray renames its workers and agents; the tree is read while the
    driver lives)."""
    import psutil

    found = {p.pid: p for p in psutil.Process(driver_pid).children(recursive=True)}
    for p in psutil.process_iter(["cmdline"]):
        if str(temp) in " ".join(p.info["cmdline"] or []):
            found.setdefault(p.pid, p)
    return list(found.values())


def _alive(procs) -> list:
    import psutil

    alive = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.Error:
            pass
    return alive


def test_sigkill_of_the_driver_stops_its_local_ray_within_10s(random_run, tmp_path):
    """D11: the OOM killer's way (SIGKILL to the driver's pid alone) leaves no process of the local
    Ray the sweep started alive 10 s later (Ray's own agents lingered about a minute)."""
    temp = Path(tempfile.mkdtemp(prefix="rk-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    try:
        env = {k: v for k, v in __import__("os").environ.items() if k != "RAY_ADDRESS"}
        env.update(RAY_TMPDIR=str(temp), RAY_USAGE_STATS_ENABLED="0")
        out = tmp_path / "results"
        s = Sweep(env, [f"models.0.path={random_run}", f"output.dir={out}", "sampling.seeds=4",
                        "sampling.max_tokens=24", "scenarios.families=[blackmail]", "generation.batch_size=4",
                        "generation.num_actors=1", "ray.num_cpus=1", "wandb.mode=disabled"])
        deadline = time.monotonic() + 600
        while not _parquet_files(out):  # Ray, its agents, workers and an engine all up
            assert s.p.poll() is None and time.monotonic() < deadline, s.output[-3000:]
            time.sleep(0.2)
        procs = _session_processes(s.p.pid, temp)
        cmdlines = [" ".join(p.cmdline()) for p in _alive(procs)]
        names = sorted({c.split()[0].rsplit("/", 1)[-1] for c in cmdlines})
        assert any("/raylet/raylet " in c for c in cmdlines) and "ray::DashboardAgent" in names, names
        killed = time.monotonic()
        s.p.send_signal(signal.SIGKILL)
        s.wait()
        left = _alive(procs)
        while left and time.monotonic() - killed < 10:
            time.sleep(0.1)
            left = _alive(procs)
        gone_after = time.monotonic() - killed
        left += [p for p in _alive(_session_processes_named(temp)) if p not in left]
        assert not left, [(p.pid, " ".join(p.cmdline())[:60]) for p in _alive(left)]
        print(f"\nD11: {len(procs)} processes of the sweep's local Ray, all gone {gone_after:.1f}s after SIGKILL "
              f"of the driver: {names}")
    finally:
        for p in _alive(_session_processes_named(temp)):
            p.kill()
        shutil.rmtree(temp, ignore_errors=True)


def _session_processes_named(temp: Path) -> list:
    import psutil

    return [p for p in psutil.process_iter(["cmdline"]) if str(temp) in " ".join(p.info["cmdline"] or [])]


@pytest.fixture
def small_disk():
    """A 150 kB tmpfs (root only): a few batches fit, the sweep's do not; `grow()` makes room."""
    import os

    mnt = Path(tempfile.mkdtemp(prefix="rd-", dir="/tmp"))
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=150k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        mnt.rmdir()
        pytest.skip("needs root to mount a small tmpfs")

    def grow() -> None:
        subprocess.run(["mount", "-o", "remount,size=16m", str(mnt)], check=True)

    try:
        yield mnt, grow
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        shutil.rmtree(mnt, ignore_errors=True)


def test_disk_full_mid_sweep_is_one_line_and_a_rerun_completes(random_run, small_disk):
    """D9: output.dir on a disk that fills mid-sweep: exit 1, one closing line naming the file and
    the errno, no traceback, no temporary file, the local Ray stopped; after making room a re-run
    completes the grid with no duplicate."""
    import os

    mnt, grow = small_disk
    temp = Path(tempfile.mkdtemp(prefix="rk-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_TMPDIR=str(temp), RAY_USAGE_STATS_ENABLED="0")
    out = mnt / "results"
    args = [f"models.0.path={random_run}", f"output.dir={out}", "sampling.seeds=4", "sampling.max_tokens=24",
            "scenarios.families=[blackmail]", "generation.batch_size=4", "generation.num_actors=1", "ray.num_cpus=1",
            "wandb.mode=offline", "wandb.transcripts_per_checkpoint=2"]
    try:
        s = Sweep(env, args)
        procs = []
        deadline = time.monotonic() + 900
        while s.p.poll() is None and time.monotonic() < deadline:
            if not procs and s.saw(r"generation engine\(s\)"):
                procs = _session_processes(s.p.pid, temp)
            time.sleep(0.2)
        rc = s.wait(timeout=60)
        lines = [ln for ln in s.lines if ln.strip()]
        assert rc == 1, s.output[-3000:]
        assert "Traceback" not in s.output and "Logging error" not in s.output, s.output[-3000:]
        assert re.match(r"runner: cannot write (results file|the run's config) .*: No space left on device \(ENOSPC\); "
                        r"finished batches are kept in .*a re-run resumes after them", lines[-1]), lines[-5:]
        assert not _temporaries(out) and not list(out.glob("_runs/.tmp-*"))
        rows = sum(pq.read_metadata(f).num_rows for f in _parquet_files(out))
        killed = time.monotonic()
        while _alive(procs) and time.monotonic() - killed < 10:
            time.sleep(0.2)
        assert procs and not _alive(procs), [" ".join(p.cmdline())[:60] for p in _alive(procs)]

        grow()
        again = Sweep(env, args)
        assert again.wait(timeout=900) == 0, again.output[-3000:]
        counts = check_dataset(out, 3 * 4 * 4)
        print(f"\nD9: disk full after {rows} rows: exit {rc}, last line: {lines[-1]}\n"
              f"   re-run after making room: {counts}")
    finally:
        for p in _alive(_session_processes_named(temp)):
            p.kill()
        shutil.rmtree(temp, ignore_errors=True)
