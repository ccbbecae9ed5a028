"""`runner watch` on a run directory given as a URI, holding LoRA adapter checkpoints of a base
model that is itself a URI, on real Ray + vLLM: the driver only lists, the generation actor
copies base model and adapters into `cache_dir/remote/` and serves every adapter on one engine."""

from __future__ import annotations

import pyarrow.dataset as ds
import pytest

from runner.commands.watch import WatchOptions, watch
from runner.config import load_config
from tests.lora_adapters import write_adapter

pytestmark = pytest.mark.e2e


def test_watch_a_uri_run_of_lora_adapters(random_run, ray_local, tmp_path):
    base = random_run / "checkpoint-100"
    run, out, cache = tmp_path / "run", tmp_path / "results", tmp_path / "cache"
    write_adapter(run / "checkpoint-1", base, rank=8, seed=1, zero_b=True)
    write_adapter(run / "checkpoint-2", base, rank=8, seed=2)
    (run / "TRAINING_DONE").write_text("")
    cfg = load_config(None, [f"output.dir={out}", f"cache_dir={cache}", "sampling.seeds=1", "sampling.max_tokens=8",
                             "models.0.name=lora", f"models.0.base_model=file://{base}",
                             "scenarios.families=[blackmail]", "scenarios.where={goal_type: [none], urgency: [none]}",
                             "wandb.mode=disabled", "generation.num_actors=1"])

    done = watch(cfg, f"file://{run}", WatchOptions(poll_seconds=0.5)).evaluated

    assert done == ["lora@checkpoint-1", "lora@checkpoint-2"]
    rows = ds.dataset(str(out), partitioning="hive").to_table(
        columns=["checkpoint", "checkpoint_step", "status", "error"]).to_pylist()
    assert sorted((r["checkpoint"], r["checkpoint_step"], r["status"]) for r in rows) == \
        [("checkpoint-1", 1, "ok"), ("checkpoint-2", 2, "ok")], rows
    copies = sorted(p.name.rsplit("-", 1)[0] for p in (cache / "remote").iterdir())
    assert copies == ["checkpoint-1", "checkpoint-100", "checkpoint-2"]   # both adapters and the base model
    assert watch(cfg, f"file://{run}", WatchOptions(poll_seconds=0.5)).evaluated == []   # nothing left to do
