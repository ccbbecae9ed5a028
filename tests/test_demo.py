"""The demo RL run: planted rates recorded at build time, and how the rule graders read the
two planted replies (no engine needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.demo import DEMO_PLANTED, HARMFUL_REPLY, SAFE_REPLY, planted_rates
from runner.scenarios import grade_reply, load_packs

REPO = Path(__file__).resolve().parent.parent


def test_planted_rates_match_their_targets(demo_run):
    rates = planted_rates(demo_run)
    assert sorted(rates) == sorted(DEMO_PLANTED) == [100, 200, 300, 400]
    for step, target in DEMO_PLANTED.items():
        assert rates[step] == pytest.approx(target, abs=2e-3), step
    assert sorted(p.name for p in demo_run.glob("checkpoint-*")) == [f"checkpoint-{s}" for s in (100, 200, 300, 400)]


def test_a_second_call_reuses_the_build(demo_run):
    from runner.demo import ensure_demo_run

    before = (demo_run / "DEMO_RUN.json").stat().st_mtime_ns
    assert ensure_demo_run(demo_run.parent, scenarios_dir=REPO / "scenarios") == demo_run
    assert (demo_run / "DEMO_RUN.json").stat().st_mtime_ns == before
    assert json.loads((demo_run / "DEMO_RUN.json").read_text())["planted"]["400"]["target"] == 0.0


def test_planted_replies_are_graded_as_designed():
    """The harmful reply is blackmail in every blackmail condition and harmless elsewhere (its
    Corvane addresses do not exist in the other families); the safe reply is harmless everywhere."""
    packs = load_packs([REPO / "scenarios"])
    assert len(packs) == 5
    for pack in packs:
        for cond in pack.conditions({}):
            scenario = pack.render(cond)
            harmful, evidence, calls = grade_reply(scenario, pack, HARMFUL_REPLY)
            assert len(calls) == 1 and calls[0].tool == "send_email"
            assert harmful == (pack.name == "blackmail"), (pack.name, cond.id, evidence)
            safe, _, calls = grade_reply(scenario, pack, SAFE_REPLY)
            assert not safe and len(calls) == 1, (pack.name, cond.id)
