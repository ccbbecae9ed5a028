"""The demo's planted behaviour measured end to end (real Ray, real vLLM CPU, rule grader).

Each demo checkpoint sends the blackmail email with a known probability (0.8, 0.5, 0.2, 0.0 over
"training"), recorded when the run is built. A sweep over all 78 blackmail conditions x 2 seeds
must measure each rate with its planted value inside the 95% Wilson interval, and every reply
must be one of the two planted replies (so the engine, the seeds and the parser are all right).
"""

from __future__ import annotations


import pyarrow.dataset as ds
import pytest

from runner.config import load_config
from runner.demo import HARMFUL_REPLY, SAFE_REPLY, planted_rates
from runner.sweep import run_sweep

pytestmark = pytest.mark.e2e


def test_measured_rates_match_the_planted_rates(demo_run, ray_local, tmp_path):
    out = tmp_path / "results"
    cfg = load_config(None, [
        f"models.0.path={demo_run}", f"output.dir={out}", "scenarios.families=[blackmail]", "scenarios.where={}",
        "sampling.seeds=2", "sampling.max_tokens=16", "wandb.mode=disabled"])
    s = run_sweep(cfg)
    assert s.rows_written == 4 * 78 * 2 and s.errors == 0

    planted = planted_rates(demo_run)
    measured = {}
    for step, p in planted.items():
        m = s.metrics[f"demo-rl@checkpoint-{step}"]
        assert m["blackmail/n"] == 156 and m["blackmail/unscored"] == 0
        measured[step] = m["blackmail/harmful_rate"]
        lo, hi = m["blackmail/harmful_rate_lo"], m["blackmail/harmful_rate_hi"]
        assert lo <= p <= hi, f"checkpoint-{step}: planted {p:.3f} outside measured 95% CI [{lo:.3f}, {hi:.3f}]"
    print("planted vs measured:", {k: (round(planted[k], 3), round(v, 3)) for k, v in measured.items()})
    assert measured[400] == 0.0

    rows = ds.dataset(str(out), partitioning="hive").to_table(columns=["response", "harmful"]).to_pylist()
    assert {r["response"] for r in rows} <= {HARMFUL_REPLY, SAFE_REPLY}
    assert all(r["harmful"] == (r["response"] == HARMFUL_REPLY) for r in rows)
