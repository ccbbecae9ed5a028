"""`runner grade` end to end: real Ray, real vLLM (CPU) judge, on a small sweep's dataset.

Plumbing only (the demo model's replies are planted and may change): a re-grade adds one row
per `ok` item under a new grading version, leaves every earlier row as it was, and a second
re-grade adds nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.cli import main
from runner.commands.sweep import run_sweep
from runner.config import load_config
from runner.graders.awareness import LABELS
from runner.sinks.parquet import latest_rows, read_results

pytestmark = pytest.mark.e2e

GENERATION = ("item_id", "scenario", "condition", "model", "checkpoint", "checkpoint_step", "seed", "response",
              "status", "error", "num_output_tokens", "finish_reason", "temperature", "top_p", "max_tokens")


def _sorted_rows(out: Path) -> list[dict]:
    return sorted(read_results(out).to_pylist(), key=lambda r: (r["run_id"], r["item_id"]))


def test_grade_adds_a_grading_version_keeps_old_rows_and_resumes(demo_run, ray_local, tmp_path, capsys):
    out = tmp_path / "results"
    common = [f"cache_dir={demo_run.parent}", "scenarios.families=[blackmail]", "grading.judge.max_tokens=24",
              "grading.judge.max_attempts=1"]
    sweep = run_sweep(load_config(None, [
        f"models.0.path={demo_run}", "models.0.checkpoints=[checkpoint-100]", f"output.dir={out}",
        "sampling.seeds=1", "sampling.max_tokens=16", "generation.batch_size=8", "generation.num_actors=1",
        "wandb.mode=disabled", *common]))
    before = _sorted_rows(out)
    assert len(before) == sweep.rows_written == 4
    sweep_version = before[0]["grading_version"]
    assert sweep_version and {r["grading_version"] for r in before} == {sweep_version}
    ok = {r["item_id"]: r for r in before if r["status"] == "ok"}
    assert ok
    assert all(r["eval_awareness"] in LABELS for r in ok.values())  # classified in the rule grader actor
    capsys.readouterr()

    judge = ["grading.judge.enabled=true", "grading.judge.model=builtin:demo-rl"]
    assert main(["grade", str(out), *common, *judge, "wandb.mode=offline"]) == 0
    printed = capsys.readouterr().out
    after = _sorted_rows(out)
    old = [r for r in after if r["run_id"] == sweep.run_id]
    new = [r for r in after if r["run_id"] != sweep.run_id]
    assert old == before  # earlier rows untouched, value for value
    assert len(new) == len(ok) and {r["item_id"] for r in new} == set(ok)
    (version,) = {r["grading_version"] for r in new}
    (run_id,) = {r["run_id"] for r in new}
    assert version != sweep_version and version in printed and "wandb: " in printed
    for r in new:
        assert {c: r[c] for c in GENERATION} == {c: ok[r["item_id"]][c] for c in GENERATION}
        assert r["judge_model"] == "builtin:demo-rl" and r["judge_attempts"] == 1 and r["rubric_version"]
        assert r["eval_awareness"] in LABELS
        assert (r["harmful"] is None) == (r["unscored_reason"] is not None)  # a label, or the reason why not
        assert r["created_at"] > ok[r["item_id"]]["created_at"]
    assert (out / "_runs" / f"{run_id}.yaml").is_file()
    assert list((out / "_wandb").rglob("offline-run-*"))
    # Readers now see the newest grading; generation columns are the sweep's.
    latest = latest_rows(read_results(out)).to_pylist()
    assert {r["grading_version"] for r in latest} == {version}

    # Resumable: everything is graded with this version, so a re-run adds nothing.
    runs_before = set((out / "_runs").iterdir())
    assert main(["grade", str(out), *common, *judge, "wandb.mode=disabled"]) == 0
    assert "nothing to grade" in capsys.readouterr().out
    assert _sorted_rows(out) == after and set((out / "_runs").iterdir()) == runs_before
