"""A session that fails to open stops the actors it started (issue 15 B8), without Ray."""

from __future__ import annotations

import pytest

from runner import session as session_mod
from runner.bench.driver import build_fake_run
from runner.config import load_config
from runner.plan import plan_sweep


class FakeStages:
    def __init__(self):
        self.stopped = 0

    def shutdown(self):
        self.stopped += 1


def test_b8_actors_are_stopped_when_a_step_after_building_them_fails(tmp_path, monkeypatch):
    """B8: the run record, the Parquet sink or W&B failing after the stages started left every
    actor (and its engine) running until Ray shut down."""
    run = build_fake_run(tmp_path / "run", 1)
    plan = plan_sweep(load_config(None, ["models.0.name=fake", f"models.0.path={run}", "wandb.mode=disabled",
                                         "scenarios.families=[leaking]", f"output.dir={tmp_path / 'out'}"]))
    stages = FakeStages()
    monkeypatch.setattr(session_mod, "init_ray", lambda cfg: None)
    monkeypatch.setattr(session_mod, "build_stages", lambda *a, **k: stages)

    def no_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(session_mod, "record_run", no_disk)
    with pytest.raises(OSError):
        session_mod.SweepSession(plan)
    assert stages.stopped == 1
