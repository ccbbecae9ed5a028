"""Issue 16 D3: a grader pool that dies is not silent. Its items are unscored with a transient
reason, the sweep exits 1, and a re-run grades them again from the stored replies (no new
generation rows), after which every item holds exactly one final row of the grading version."""

from __future__ import annotations

import collections

import pytest

from runner.commands._output import exit_status
from runner.commands.sweep import run_sweep
from runner.config import load_config
from runner.graders import rules
from runner.graders.reasons import is_transient
from runner.graders.registry import register
from runner.sinks.parquet import read_results
from tests.graders import dying_grader

pytestmark = pytest.mark.e2e


def _cfg(demo_run, out):
    return load_config(None, [f"models.0.path={demo_run}", "scenarios.families=[leaking]", "sampling.seeds=2",
                              "sampling.max_tokens=24", "generation.num_actors=1", f"output.dir={out}",
                              "wandb.mode=disabled",
                              "scenarios.where={urgency: [replacement], goal_type: [explicit]}"])


def test_a_dead_grader_pool_fails_the_run_and_the_rerun_regrades_from_stored_replies(demo_run, ray_local, tmp_path):
    marker = tmp_path / "graders-die"
    marker.touch()
    out = tmp_path / "results"
    register(dying_grader.entry(str(marker)))
    try:
        first = run_sweep(_cfg(demo_run, out))
    finally:
        register(rules.ENTRY)
    rows = read_results(out).to_pylist()
    assert rows and all(r["status"] == "ok" and r["harmful"] is None and is_transient(r["unscored_reason"])
                        for r in rows), {r["unscored_reason"] for r in rows}
    assert first.left[1] == first.total_items > 0
    assert exit_status(first.left, "the sweep") == 1
    replies = {r["item_id"]: r["response"] for r in rows}

    marker.unlink()
    second = run_sweep(_cfg(demo_run, out))   # the real rule grader again
    assert second.regraded == len(replies) and second.left == (0, 0)
    assert exit_status(second.left, "the sweep") == 0
    rows = read_results(out).to_pylist()
    assert {r["item_id"]: r["response"] for r in rows} == replies      # nothing regenerated
    final = collections.Counter((r["item_id"], r["grading_version"]) for r in rows
                                if not is_transient(r["unscored_reason"]))
    assert set(final.values()) == {1} and len(final) == len(replies)
    assert run_sweep(_cfg(demo_run, out)).rows_written == 0             # and then nothing is left
