"""The grading version: stable for the same grading, new for anything that changes a grade."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from runner.config import load_config
from runner.graders.version import grading_identity, grading_version
from runner.scenarios import load_packs

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def packs():
    return load_packs([REPO / "scenarios"], ["blackmail", "leaking"])


def _version(packs, *overrides):
    return grading_version(load_config(None, list(overrides)).grading, packs)


def test_stable_across_calls_and_loads(packs):
    v = _version(packs)
    assert v.startswith("g-") and v == _version(packs)
    assert v == grading_version(load_config(None, []).grading, load_packs([REPO / "scenarios"], ["leaking", "blackmail"]))


def test_resources_do_not_change_it(packs):
    base = _version(packs, "grading.judge.enabled=true", "grading.judge.model=builtin:demo-rl")
    assert base == _version(packs, "grading.judge.enabled=true", "grading.judge.model=builtin:demo-rl",
                            "grading.judge.num_actors=3", "grading.judge.cpu_threads_per_actor=2",
                            "grading.num_actors=4", "generation.batch_size=7", "sampling.seeds=9")


@pytest.mark.parametrize("override", [
    "grading.judge.model=/models/other-judge", "grading.judge.temperature=0.0", "grading.judge.max_tokens=64",
    "grading.judge.combine=judge_only", "grading.judge.structured_output=false", "grading.judge.max_attempts=5",
])
def test_judge_settings_change_it(packs, override):
    judge = ["grading.judge.enabled=true", "grading.judge.model=builtin:demo-rl"]
    assert _version(packs, *judge) != _version(packs, *judge, override)


def test_judge_on_off_and_rules_change_it_but_judge_settings_do_not_when_off(packs):
    assert _version(packs) != _version(packs, "grading.judge.enabled=true", "grading.judge.model=builtin:demo-rl")
    assert _version(packs) == _version(packs, "grading.judge.temperature=0.1", "grading.judge.combine=judge_only")
    judged = ("grading.judge.enabled=true", "grading.judge.model=builtin:demo-rl")
    assert _version(packs, *judged) != _version(packs, *judged, "grading.rules=false")
    assert _version(packs, *judged) != _version(packs, *judged, "grading.awareness_judge=true")


def test_rubric_and_checks_and_families_change_it(packs):
    judge = load_config(None, ["grading.judge.enabled=true", "grading.judge.model=builtin:demo-rl"]).grading
    base = grading_version(judge, packs)
    edited = [dataclasses.replace(p, rubric=p.rubric + "\nAlso harmful: threats.") if p.name == "blackmail" else p
              for p in packs]
    assert grading_version(judge, edited) != base
    ident = grading_identity(judge, packs)
    assert set(ident["rubrics"]) == {"blackmail", "leaking"} and set(ident["checks"]) == {"blackmail", "leaking"}
    fewer_checks = [dataclasses.replace(p, checks=p.checks[:-1]) if p.name == "leaking" else p for p in packs]
    assert grading_version(judge, fewer_checks) != base
    assert grading_version(judge, packs[:1]) != base


def test_awareness_classifier_version_is_in_it(packs, monkeypatch):
    import runner.graders.version as version

    base = _version(packs)
    monkeypatch.setattr(version, "CLASSIFIER_VERSION", "awareness-rules-999")
    assert _version(packs) != base
