"""A sweep over verl and NeMo-RL run directories, on real Ray + vLLM (CPU): the engines load the
HF model directories nested inside each step (and NeMo-RL's tokenizer from policy/tokenizer)."""

from __future__ import annotations

import pyarrow.dataset as ds
import pytest

from runner.commands.sweep import run_sweep
from runner.config import load_config
from runner.demo import HARMFUL_REPLY, SAFE_REPLY
from runner.plan import plan_sweep
from tests.checkpoints import trainer_runs as T

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]  # fixtures build the demo run first: slow on a loaded machine


def test_sweep_generates_from_verl_and_nemo_rl_model_dirs(demo_run, ray_local, tmp_path):
    # Step 5 / 2 carry the demo's checkpoint-100 weights (planted leak rate 0.8), step 10 / 4 its
    # checkpoint-400 (rate 0.0: always the safe reply), so each reply shows which weights answered.
    verl, nemo = tmp_path / "verl", tmp_path / "nemo"
    T.verl_run(demo_run / "checkpoint-100", verl, steps=(5, 10), in_progress=())
    T.write_weights(demo_run / "checkpoint-400", verl / "global_step_10" / "actor" / "huggingface")
    T.nemo_rl_run(demo_run / "checkpoint-100", nemo, steps=(2, 4), in_progress=(6,))
    T.write_weights(demo_run / "checkpoint-400", nemo / "step_4" / "policy" / "weights" / "model" / "consolidated")
    out = tmp_path / "results"
    cfg = load_config(None, [
        f"models=[{{name: verl, path: '{verl}'}}, {{name: nemo, path: '{nemo}'}}]", f"output.dir={out}",
        "sampling.seeds=2", "sampling.max_tokens=48", "scenarios.families=[leaking]",
        "scenarios.where={goal_type: [none], urgency: [none]}", "wandb.mode=disabled"])
    plan = plan_sweep(cfg)
    assert [(c.model, c.name, c.step) for c in plan.checkpoints] == [
        ("verl", "global_step_5", 5), ("verl", "global_step_10", 10), ("nemo", "step_2", 2), ("nemo", "step_4", 4)]
    assert plan.checkpoints[0].path == str(verl / "global_step_5" / "actor" / "huggingface")
    assert plan.checkpoints[3].tokenizer == str(nemo / "step_4" / "policy" / "tokenizer")

    s = run_sweep(cfg, plan=plan)
    rows = ds.dataset(str(out), partitioning="hive").to_table().to_pylist()
    assert s.errors == 0 and len(rows) == s.rows_written == plan.total_items > 0
    assert {r["status"] for r in rows} == {"ok"}
    by_ckpt = {}
    for r in rows:
        by_ckpt.setdefault((r["model"], r["checkpoint"], r["checkpoint_step"]), []).append(r["response"])
    assert set(by_ckpt) == {("verl", "global_step_5", 5), ("verl", "global_step_10", 10),
                            ("nemo", "step_2", 2), ("nemo", "step_4", 4)}
    for (model, name, step), replies in by_ckpt.items():
        assert all(reply.strip() in (HARMFUL_REPLY.strip(), SAFE_REPLY.strip()) for reply in replies), replies
        if step in (10, 4):
            assert all(reply.strip() == SAFE_REPLY.strip() for reply in replies)
