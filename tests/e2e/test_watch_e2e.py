"""`runner watch` on real Ray + vLLM: checkpoints copied in while it runs are each evaluated once,
also across a restart of the watcher."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections import Counter
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from runner.commands.watch import WatchOptions, watch
from runner.config import load_config

pytestmark = pytest.mark.e2e


def _land(demo_run: Path, run_dir: Path, name: str) -> None:
    """Copy a checkpoint in the way trainers should: to a hidden name, then one rename."""
    tmp = run_dir / f".{name}.partial"
    shutil.copytree(demo_run / name, tmp)
    os.replace(tmp, run_dir / name)


def _rows(out: Path) -> list[dict]:
    if not list(out.glob("scenario=*/[!.]*.parquet")):
        return []
    return ds.dataset(str(out), partitioning="hive").to_table(columns=["item_id", "checkpoint"]).to_pylist()


def _wait_for(pred, timeout=300):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


def test_watch_evaluates_each_checkpoint_once_across_restarts(demo_run, ray_local, tmp_path):
    run_dir, out = tmp_path / "run", tmp_path / "results"
    run_dir.mkdir()
    cfg = load_config(None, [f"output.dir={out}", "sampling.seeds=2", "sampling.max_tokens=16",
                             "scenarios.families=[blackmail]", "scenarios.where={goal_type: [none], urgency: [none]}",
                             "wandb.mode=offline"])
    per_ckpt = 2  # 1 condition (no goal, no urgency) x 2 seeds
    opts = WatchOptions(poll_seconds=0.5)

    stop = threading.Event()
    first: list[str] = []
    t = threading.Thread(target=lambda: first.extend(watch(cfg, str(run_dir), opts, stop=stop).evaluated))
    t.start()
    time.sleep(2)  # the watcher polls an empty run directory
    _land(demo_run, run_dir, "checkpoint-100")
    _wait_for(lambda: len(_rows(out)) == per_ckpt)
    _land(demo_run, run_dir, "checkpoint-200")
    _wait_for(lambda: len(_rows(out)) == 2 * per_ckpt)
    stop.set()
    t.join(timeout=300)
    assert first == ["demo-rl@checkpoint-100", "demo-rl@checkpoint-200"]

    # Restart: one more checkpoint and the trainer's final marker; the watcher ends by itself.
    _land(demo_run, run_dir, "checkpoint-300")
    (run_dir / "TRAINING_DONE").write_text("")
    second = watch(cfg, str(run_dir), opts).evaluated
    assert second == ["demo-rl@checkpoint-300"]

    rows = _rows(out)
    assert Counter(r["checkpoint"] for r in rows) == {f"checkpoint-{s}": per_ckpt for s in (100, 200, 300)}
    assert len({r["item_id"] for r in rows}) == len(rows)

    # A third start finds everything done, writes nothing, and stops on the marker.
    assert watch(cfg, str(run_dir), opts).evaluated == []
    assert len(_rows(out)) == 3 * per_ckpt
