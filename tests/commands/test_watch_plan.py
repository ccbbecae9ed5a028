"""`runner watch` without Ray: a fake session stands in for engines (issue 15: B1, B4, B5)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from runner.bench.driver import build_fake_run
from runner.checkpoints import Checkpoint
from runner.commands.watch import WatchOptions, WatchOrder, select_checkpoints, watch
from runner.config import load_config
from runner.errors import ConfigError
from runner.plan import plan_sweep
from runner.session import SweepSummary
from runner.sinks.parquet import ParquetSink


class FakeSession:
    """What watch needs of a SweepSession: run, stages.generation.alive(), close."""

    def __init__(self, plan, stream=None):
        self.plan, self.ran = plan, []
        self.stages = type("S", (), {"generation": type("G", (), {"alive": lambda self: True})()})()

    def run(self, checkpoints, progress):
        self.ran += [c.key for c in checkpoints]
        return SweepSummary("fake", "", 0)

    def close(self):
        return []


def _overrides(out: str, *extra: str) -> list[str]:
    return ["models.0.name=fake", "scenarios.families=[blackmail]", "sampling.seeds=1",
            "scenarios.where={urgency: [replacement], goal_type: [explicit], goal_value: [america]}",
            f"output.dir={out}", "wandb.mode=disabled", *extra]


def _sessions():
    made = []

    def factory(plan, stream):
        made.append(FakeSession(plan, stream))
        return made[-1]
    return made, factory


def _mark_done(cfg, run: Path, out: Path) -> None:
    """ok rows for every grid item of the run's checkpoints, as a finished sweep leaves them."""
    plan = plan_sweep(load_config(None, [*_overrides(str(out)), f"models.0.path={run}"]))
    ParquetSink(out, "earlier").write([
        {"run_id": "earlier", "item_id": i, "scenario": "blackmail", "status": "ok", "schema_version": 1}
        for i in plan.grid_ids()])


def test_b1_a_home_relative_output_dir_counts_what_is_done(tmp_path, monkeypatch):
    """B1: watch read done items from the unexpanded `~/...` path, so a restart re-walked every
    checkpoint into a new session (and a new W&B run) though nothing was left."""
    monkeypatch.setenv("HOME", str(tmp_path))
    run = build_fake_run(tmp_path / "run", 2)
    _mark_done(None, run, tmp_path / "evals" / "x")
    cfg = load_config(None, _overrides("~/evals/x"))
    made, factory = _sessions()
    result = watch(cfg, str(run), WatchOptions(poll_seconds=0, max_polls=1), session_factory=factory)
    assert result.evaluated == [] and made == []


def test_b4_watch_evaluates_every_model_and_keeps_their_paths(tmp_path):
    """B4: models[1:] were dropped silently. models[0] watches RUN_DIR; the others keep their path."""
    run = build_fake_run(tmp_path / "run", 2)
    other = build_fake_run(tmp_path / "other", 1)
    conf = tmp_path / "two.yaml"
    conf.write_text(f"models:\n  - {{name: fake, path: /replaced/by/run_dir}}\n  - {{name: baseline, path: {other}}}\n")
    cfg = load_config(str(conf), _overrides(str(tmp_path / "out"))[1:])
    made, factory = _sessions()
    result = watch(cfg, str(run), WatchOptions(poll_seconds=0, max_polls=1), session_factory=factory)
    assert sorted(result.evaluated) == sorted(made[0].ran)
    assert {k.split("@")[0] for k in result.evaluated} == {"fake", "baseline"}
    models = made[0].plan.cfg.models
    assert models[0].path.endswith(str(run)) and models[1].path == str(other)


def test_b4_an_api_model_cannot_be_the_watched_one(tmp_path):
    run = build_fake_run(tmp_path / "run", 1)
    cfg = load_config(None, [*_overrides(str(tmp_path / "out")), "models.0.backend=openai",
                             "models.0.path=served-name", "models.0.api.vllm_extensions=false"])
    with pytest.raises(ConfigError, match="models\\[0\\].*served over an API"):
        watch(cfg, str(run), WatchOptions(poll_seconds=0, max_polls=1), session_factory=_sessions()[1])


def _ck(step: int) -> Checkpoint:
    return Checkpoint(model="m", name=f"checkpoint-{step}", step=step, path="", tokenizer="")


def test_b5_every_selects_by_step_value_so_pruning_changes_nothing():
    """B5: `--every K` ranked the checkpoints present now; a pruned checkpoint shifted every rank."""
    opts = WatchOptions(every_steps=200)
    full = [_ck(s) for s in (100, 200, 300, 400, 500, 600)]
    pruned = full[2:]  # the trainer deleted 100 and 200
    assert [c.step for c in select_checkpoints(full, opts)] == [200, 400, 600]
    assert [c.step for c in select_checkpoints(pruned, opts)] == [400, 600]
    latest = WatchOptions(every_steps=200, order=WatchOrder.latest)
    assert [c.step for c in select_checkpoints(full, latest)] == [600, 400, 200]


def test_watch_runs_each_new_checkpoint_once_across_polls(tmp_path):
    run = build_fake_run(tmp_path / "run", 1)
    cfg = load_config(None, _overrides(str(tmp_path / "out")))
    made, factory = _sessions()
    first = watch(cfg, str(run), WatchOptions(poll_seconds=0, max_polls=1), session_factory=factory)
    assert len(first.evaluated) == 1
    shutil.copytree(run / "checkpoint-100", run / "checkpoint-200")
    # The fake wrote no rows: checkpoint-100 is still not done, so it runs again with the new one.
    second = watch(cfg, str(run), WatchOptions(poll_seconds=0, max_polls=1), session_factory=factory)
    assert sorted(second.evaluated) == sorted(["fake@checkpoint-100", "fake@checkpoint-200"])
