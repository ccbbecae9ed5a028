"""A real TRL run (SFTTrainer on the demo model, CPU) writing checkpoints while `runner watch`
evaluates them on real Ray + vLLM: each checkpoint only once its trainer_state.json is there,
the final save in the run root included, full weights and PEFT adapters."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from runner.commands.watch import WatchOptions, watch
from runner.config import ModelBackend, load_config
from runner.generation.backends import BACKENDS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]  # fixtures build the demo run first: slow on a loaded machine
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("peft", [False, True], ids=["full", "peft"])
def test_watch_evaluates_a_real_trl_run_as_it_saves(random_run, ray_local, tmp_path, monkeypatch, peft):
    base, run_dir, out = random_run / "checkpoint-100", tmp_path / "run", tmp_path / "results"
    run_dir.mkdir()
    seen_before_marker: list[str] = []
    local = BACKENDS[ModelBackend.vllm]

    def discover_and_check(model):
        found = local.checkpoints(model)
        for c in found:   # the Trainer's marker must be there whenever a checkpoint is handed to the engines
            if not (Path(c.adapter or c.path) / "trainer_state.json").exists():
                seen_before_marker.append(c.name)
        return found

    monkeypatch.setitem(BACKENDS, ModelBackend.vllm, dataclasses.replace(local, checkpoints=discover_and_check))
    cfg = load_config(None, [f"output.dir={out}", "sampling.seeds=1", "sampling.max_tokens=8",
                             "scenarios.families=[leaking]", "scenarios.where={goal_type: [none], urgency: [none]}",
                             "wandb.mode=disabled"])
    done: list[str] = []
    watcher = threading.Thread(target=lambda: done.extend(watch(cfg, str(run_dir), WatchOptions(poll_seconds=0.5)).evaluated))
    watcher.start()
    # Full: the last step is not a Trainer checkpoint, so only the root's final save holds it.
    # PEFT: the Trainer also checkpoints the last step, so the root is the same step (evaluated once).
    args = [sys.executable, "-m", "tests.checkpoints.trl_train", str(base), str(run_dir), "--steps", "5",
            "--save-steps", "2", *(["--peft"] if peft else ["--no-final-checkpoint"])]
    trained = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert trained.returncode == 0, trained.stderr[-3000:]
    watcher.join(timeout=900)
    assert not watcher.is_alive()

    assert seen_before_marker == []
    expected = ["checkpoint-2", "checkpoint-4", "final"] if not peft else ["checkpoint-2", "checkpoint-4", "checkpoint-5"]
    assert sorted(k.split("@", 1)[1] for k in done) == sorted(expected)
    rows = ds.dataset(str(out), partitioning="hive").to_table().to_pylist()
    assert {r["status"] for r in rows} == {"ok"}
    step_of = {"checkpoint-2": 2, "checkpoint-4": 4, "checkpoint-5": 5, "final": 5}
    assert sorted({(r["checkpoint"], r["checkpoint_step"]) for r in rows}) == sorted((n, step_of[n]) for n in expected)
    assert all(r["response"] for r in rows)
