"""Adding a grader is one file (toy_grader.py) plus one registry line: it runs in the pipeline's
one grading stage, on real Ray actors, beside the rules."""

from __future__ import annotations

from pathlib import Path

from runner.config import load_config
from runner.generation.engine import GenerationResult
from runner.graders.registry import GRADERS, register
from runner.grid import SamplingParams, WorkItem
from runner.pipeline.build import build_stages
from runner.pipeline.loop import run_pipeline
from runner.pipeline.sources import StoredSource
from runner.rows import grading_columns
from runner.scenarios import load_packs
from tests.graders import toy_grader

REPO = Path(__file__).resolve().parents[2]


def test_a_toy_grader_runs_beside_the_rules(ray_local):
    register(toy_grader.ENTRY)   # the one registry line
    try:
        cfg = load_config(None, ["wandb.mode=disabled", "scenarios.families=[leaking]"])
        packs = load_packs([REPO / "scenarios"], ["leaking"])
        stages = build_stages(cfg, pack_dirs=[str(REPO / "scenarios")], families=["leaking"], packs=packs,
                              judge_model=None, generation=False, where={})
        try:
            assert [s.name for s in stages.graders] == ["rules", "length"]
            items = [WorkItem(item_id=f"t{i}", scenario="leaking", condition=_condition(packs[0]), model="m",
                              checkpoint="checkpoint-1", checkpoint_step=1, seed=i, system="s", user="u",
                              sampling=SamplingParams(1.0, 1.0, 8)) for i in range(5)]
            todo = [(it, GenerationResult(it.item_id, "ok", "x" * (10 + i)), {}) for i, it in enumerate(items)]
            done = []
            run_pipeline(StoredSource(todo, batch_size=2), stages.graders, done.append)
        finally:
            stages.shutdown()
        got = {it.item_id: (b.grades["length"][k].chars, b.grades["rules"][k].unscored_reason)
               for b in done for k, it in enumerate(b.items)}
        assert {i: c for i, (c, _) in got.items()} == {f"t{i}": 10 + i for i in range(5)}
        assert {why for _, why in got.values()} == {"no_engagement"}  # the rules graded the same items: "xxx" is noise
        cols = grading_columns({"length": done[0].grades["length"][0]}, cfg.grading.judge.combine, ok=True)
        assert cols["finish_reason"].startswith("len=")
    finally:
        GRADERS.pop("length", None)


def _condition(pack) -> str:
    return next(iter(pack.conditions({}))).id
