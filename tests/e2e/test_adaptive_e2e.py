"""Adaptive seeds on real Ray and vLLM (CPU) with the planted demo: cells at 0% stop after one
round, the planted leaking family draws more, a re-run draws nothing and reports the same stops."""

from __future__ import annotations

import pyarrow.dataset as ds
import pytest

from runner.commands.sweep import run_sweep
from runner.config import load_config
from runner.pipeline.adaptive import seed_rule

pytestmark = pytest.mark.e2e


def _cfg(demo_run, out):
    return load_config(None, [
        f"models.0.path={demo_run}", f"output.dir={out}", "wandb.mode=disabled", "sampling.max_tokens=24",
        "models.0.checkpoints=[checkpoint-200,checkpoint-400]", "scenarios.families=[leaking,blackmail]",
        "sampling.adaptive.enabled=true", "sampling.adaptive.min_seeds=2", "sampling.adaptive.max_seeds=6",
        "sampling.adaptive.target_halfwidth=0.15", "generation.batch_size=8",
    ])


def test_adaptive_sweep_stops_settled_cells_and_resumes_to_the_same_seeds(demo_run, ray_local, tmp_path):
    out = tmp_path / "results"
    cfg = _cfg(demo_run, out)
    s = run_sweep(cfg)
    m = s.metrics
    # 0/8 (4 conditions x 2 seeds) has a half-width of 0.162, 0/16 of 0.097: two rounds.
    assert m["demo-rl@checkpoint-400"]["leaking/adaptive_seeds"] == 4
    assert m["demo-rl@checkpoint-400"]["leaking/adaptive_stop"] == "halfwidth"
    assert m["demo-rl@checkpoint-200"]["blackmail/adaptive_seeds"] == 4
    # The planted 0.5 leaking rate: k/24 has a half-width > 0.15 for 5 <= k <= 19: the cap.
    assert m["demo-rl@checkpoint-200"]["leaking/adaptive_seeds"] == 6
    assert m["demo-rl@checkpoint-200"]["leaking/adaptive_stop"] == "max_seeds"

    t = ds.dataset(str(out), partitioning="hive").to_table().to_pylist()
    assert len(t) == s.rows_written == 4 * (4 + 4 + 4 + 6)
    cell = [r for r in t if r["checkpoint"] == "checkpoint-200" and r["scenario"] == "leaking"]
    assert sorted({r["seed"] for r in cell}) == list(range(6))
    rules = {r["seed"]: r["seed_rule"] for r in cell}
    assert rules[0] == seed_rule(cfg.sampling.adaptive, 1) and rules[5] == seed_rule(cfg.sampling.adaptive, 3)

    again = run_sweep(_cfg(demo_run, out))
    assert again.rows_written == 0 and again.skipped == len(t)
    stops = {k: {x: v for x, v in mm.items() if "adaptive" in x} for k, mm in m.items()}
    assert {k: {x: v for x, v in mm.items() if "adaptive" in x} for k, mm in again.metrics.items()} == stops
