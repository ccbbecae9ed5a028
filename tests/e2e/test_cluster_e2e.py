"""A real two-node Ray cluster (`ray start --head` + `ray start --address`, one CPU each) and
`runner submit / jobs / stop` against it, black-box through the CLI and the results dataset."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from tests.e2e.raycluster import running_cluster

pytestmark = pytest.mark.e2e

RUNNER = [sys.executable, "-m", "runner.cli"]


@pytest.fixture(scope="module")
def cluster():
    with running_cluster("rc-", cpus_per_node=1, workers=1) as c:
        yield c


def _sweep_args(demo_run: Path, out: Path, seeds: int = 1) -> list[str]:
    return [f"models.0.path={demo_run}", f"output.dir={out}", f"sampling.seeds={seeds}", "sampling.max_tokens=16",
            "scenarios.families=[blackmail]", "generation.batch_size=4", "wandb.mode=offline"]


def _runner(cluster, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*RUNNER, *args], capture_output=True, text=True, env=cluster.env, timeout=timeout,
                          cwd=Path(__file__).resolve().parents[2])


def _rows(out: Path):
    return ds.dataset(str(out), partitioning="hive").to_table(columns=["item_id", "status", "checkpoint_step"])


def test_submit_follow_runs_the_sweep_on_both_nodes(cluster, demo_run, tmp_path):
    out = tmp_path / "results"
    r = _runner(cluster, "submit", "--address", cluster.dashboard, "--follow", *_sweep_args(demo_run, out))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    job_id = r.stdout.split("submitted job ", 1)[1].split(":", 1)[0]
    assert "done in" in r.stdout and f"results: {out}" in r.stdout  # the job's own log, streamed

    t = _rows(out)
    ids = t["item_id"].to_pylist()
    assert t.num_rows == len(set(ids)) == 16  # 4 checkpoints x 4 conditions x 1 seed, no duplicate
    assert set(t["status"].to_pylist()) == {"ok"}

    # Where each generation engine ran: one actor per node (each node has one CPU).
    nodes = cluster.node_ids()
    placed = [(a["actor_id"][:8], nodes.get(a["node_id"], "?"), a["node_id"][:8]) for a in cluster.actors("GenerationActor")]
    print(f"generation actors (actor, node, node_id): {placed}")
    assert {role for _, role, _ in placed} == {"head", "worker"}, placed

    jobs = _runner(cluster, "jobs", "--address", cluster.dashboard)
    assert jobs.returncode == 0 and f"{job_id}  SUCCEEDED" in jobs.stdout, jobs.stdout


def test_bad_input_submits_nothing(cluster, demo_run, tmp_path):
    before = _runner(cluster, "jobs", "--address", cluster.dashboard).stdout
    for args, expect in [
        (["sampling.seeds=zero"], "sampling.seeds"),
        (["output.dir=relative/results"], "must be an absolute path"),
        (["--address", "http://127.0.0.1:9"], "cannot reach Ray's job server"),
    ]:
        address = [] if "--address" in args else ["--address", cluster.dashboard]
        r = _runner(cluster, "submit", *address, *_sweep_args(demo_run, tmp_path / "o"), *args)
        assert r.returncode == 2, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and expect in r.stderr, r.stderr
    assert _runner(cluster, "jobs", "--address", cluster.dashboard).stdout == before
    assert not (tmp_path / "o").exists()
    r = _runner(cluster, "stop", "--address", cluster.dashboard, "runner-nope-00000000")
    assert r.returncode == 2 and "no job runner-nope-00000000" in r.stderr


def test_stop_then_resubmit_resumes_without_duplicates(cluster, random_run, tmp_path):
    """`runner stop` mid-sweep (SIGTERM to the driver): finished batches stay; the next submit
    generates only the rest."""
    out = tmp_path / "results"
    args = [f"models.0.path={random_run}", f"output.dir={out}", "sampling.seeds=2", "sampling.max_tokens=48",
            "scenarios.families=[blackmail]", "generation.batch_size=2", "wandb.mode=disabled"]
    r = _runner(cluster, "submit", "--address", cluster.dashboard, *args)
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.split("submitted job ", 1)[1].split(":", 1)[0]
    deadline = time.monotonic() + 300
    while not list(out.glob("scenario=*/*.parquet")):
        assert time.monotonic() < deadline, "no batch written within 300 s"
        time.sleep(0.5)
    stop = _runner(cluster, "stop", "--address", cluster.dashboard, job_id)
    assert stop.returncode == 0 and "stop requested" in stop.stdout, stop.stdout + stop.stderr
    while f"{job_id}  STOPPED" not in _runner(cluster, "jobs", "--address", cluster.dashboard).stdout:
        assert time.monotonic() < deadline + 60, "job did not stop"
        time.sleep(1)
    kept = _rows(out).num_rows
    assert 0 < kept < 24  # 3 checkpoints x 4 conditions x 2 seeds

    again = _runner(cluster, "submit", "--address", cluster.dashboard, "--follow", *args)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    t = _rows(out)
    assert t.num_rows == len(set(t["item_id"].to_pylist())) == 24
    assert f"{kept} items already ok" in again.stdout
    print(f"stop/resubmit: {kept} rows kept at stop, {t.num_rows} after resubmit, 0 duplicates")
