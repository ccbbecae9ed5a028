"""`runner watch` over a run directory in S3 (a local moto server) while a "trainer" uploads a
verl run into it step by step: each step is evaluated once verl's "latest" file names it, the
engines loading their own copies of the nested HF directory (real Ray + vLLM CPU)."""

from __future__ import annotations

import os
import threading
import time

import pyarrow.dataset as ds
import pytest

from runner.commands.watch import WatchOptions, watch
from runner.config import load_config
from tests.checkpoints import trainer_runs as T
from tests.checkpoints.conftest import BUCKET, upload

# The engines read S3 with the credentials of their environment, which Ray workers inherit from
# the Ray instance: set them (moto's dummy ones) before the session's Ray starts, i.e. at import.
os.environ.update({k: os.environ.get(k, v) for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                                                          "AWS_DEFAULT_REGION": "us-east-1"}.items()})

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]  # fixtures build the demo run first: slow on a loaded machine


def test_watch_over_s3_while_the_trainer_writes(s3, random_run, ray_local, tmp_path):
    client, query = s3
    local = T.verl_run(random_run / "checkpoint-100", tmp_path / "verl", steps=(5, 10), in_progress=())
    out = tmp_path / "results"
    cfg = load_config(None, [f"output.dir={out}", "sampling.seeds=1", "sampling.max_tokens=8",
                             f"cache_dir={tmp_path / 'cache'}", "scenarios.families=[leaking]",
                             "scenarios.where={goal_type: [none], urgency: [none]}", "wandb.mode=disabled"])
    done: list[str] = []
    uri = f"s3://{BUCKET}/verl?{query}"
    # The trainer has started (S3 has no empty directories: the run exists once a file does).
    upload(client, local / "global_step_5", "verl/global_step_5")
    watcher = threading.Thread(target=lambda: done.extend(watch(cfg, uri, WatchOptions(poll_seconds=0.5)).evaluated))
    watcher.start()
    for step in (5, 10):   # the trainer: the step's files, then "latest" (verl writes it last)
        upload(client, local / f"global_step_{step}", f"verl/global_step_{step}")
        time.sleep(2)   # the watcher polls a step without its "latest" entry
        assert not {r["checkpoint"] for r in _rows(out)} - {f"global_step_{s}" for s in (5, 10) if s < step}
        client.put_object(Bucket=BUCKET, Key="verl/latest_checkpointed_iteration.txt", Body=str(step).encode())
    deadline = time.monotonic() + 600
    while len({r["checkpoint"] for r in _rows(out)}) < 2 and time.monotonic() < deadline:
        time.sleep(1)
    client.put_object(Bucket=BUCKET, Key="verl/TRAINING_DONE", Body=b"")
    watcher.join(timeout=600)
    assert not watcher.is_alive()
    assert sorted(done) == ["demo-rl@global_step_10", "demo-rl@global_step_5"]
    rows = _rows(out)
    assert {r["status"] for r in rows} == {"ok"} and sorted({r["checkpoint_step"] for r in rows}) == [5, 10]
    assert list((tmp_path / "cache" / "remote").glob("huggingface-*"))   # engines loaded local copies


def _rows(out):
    if not list(out.glob("scenario=*/[!.]*.parquet")):
        return []
    return ds.dataset(str(out), partitioning="hive").to_table().to_pylist()
