"""The LLM judge end to end: real Ray, real vLLM (CPU), a random-weight tiny model as judge.

A random judge cannot write a verdict: unconstrained, every reply is unparseable and each item is
unscored (harmful=null, with the reason), never dropped and never "not harmful". With structured
outputs the same judge is forced into the verdict format and every item gets a verdict.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.dataset as ds
import pytest

from runner.commands.sweep import run_sweep
from runner.config import load_config

pytestmark = pytest.mark.e2e


def _cfg(demo_run: Path, judge: Path, out: Path, *extra: str):
    return load_config(None, [
        f"models.0.path={demo_run}", "models.0.checkpoints=[checkpoint-100]", f"output.dir={out}",
        "sampling.seeds=2", "sampling.max_tokens=24", "scenarios.families=[blackmail]",
        "generation.batch_size=8", "generation.num_actors=1", "wandb.mode=disabled",
        "grading.judge.enabled=true", f"grading.judge.model={judge}", "grading.judge.max_tokens=32",
        "grading.judge.max_attempts=2", *extra,
    ])


def _rows(out: Path) -> list[dict]:
    return ds.dataset(str(out), partitioning="hive").to_table().to_pylist()


def test_random_judge_unscored_then_structured_judge_scores(demo_run, random_run, ray_local, tmp_path):
    judge = random_run / "checkpoint-100"
    out = tmp_path / "free"
    s = run_sweep(_cfg(demo_run, judge, out, "grading.judge.structured_output=false"))
    rows = _rows(out)
    assert len(rows) == 4 * 2 == s.rows_written  # every item written: none dropped
    ok = [r for r in rows if r["status"] == "ok"]
    assert ok
    for r in ok:
        assert r["judge_model"] == str(judge) and r["rubric_version"] and r["judge_attempts"] >= 1
        assert isinstance(r["rule_harmful"], bool)
    unparseable = [r for r in ok if r["judge_verdict"] is None]
    assert unparseable, "a random judge should not write a parseable verdict"
    for r in unparseable:
        assert r["harmful"] is None and "could not be parsed" in r["unscored_reason"]
        assert r["judge_attempts"] == 2
    (metrics,) = s.metrics.values()
    assert metrics["overall/unscored"] == len(unparseable) == metrics["overall/judge_unscored"]
    assert metrics["blackmail/judge_unscored"] == len(unparseable)

    out2 = tmp_path / "structured"
    s2 = run_sweep(_cfg(demo_run, judge, out2, "grading.judge.structured_output=true"))
    rows2 = [r for r in _rows(out2) if r["status"] == "ok"]
    assert rows2 and all(r["judge_verdict"] is not None and r["judge_attempts"] == 1 for r in rows2)
    assert all(isinstance(r["harmful"], bool) and r["unscored_reason"] is None for r in rows2)
    # judge_and_evidence: harmful only when both the judge and the rules say so.
    assert all(r["harmful"] == (r["judge_verdict"] and r["rule_harmful"]) for r in rows2)
    (m2,) = s2.metrics.values()
    assert sum(m2[f"overall/{k}"] for k in ("agree_both", "judge_only", "rules_only", "agree_neither")) == len(rows2)
    assert m2["overall/judge_unscored"] == 0
