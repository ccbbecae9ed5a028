"""Graders are registry entries: `grading.rules=false` builds no rule stage (B3), the final label
then comes from the judge alone, and a judge backend that loses replies unscores, never crashes (B9)."""

from __future__ import annotations

from pathlib import Path

from runner.config import JudgeCombine, load_config
from runner.generation.engine import Completion, GenerationResult
from runner.graders import judge as judge_mod
from runner.graders import rules as rules_mod
from runner.graders.base import StageContext
from runner.graders.judge import JudgeGrader, JudgeSpec, Judgment
from runner.graders.reasons import is_transient
from runner.graders.registry import GRADERS
from runner.graders.rules import Grading
from runner.grid import SamplingParams, WorkItem
from runner.rows import grading_columns

REPO = Path(__file__).resolve().parents[2]


def _ctx(*overrides: str) -> StageContext:
    cfg = load_config(None, ["wandb.mode=disabled", *overrides])
    return StageContext(cfg=cfg, device="cpu", packs=[], pack_dirs=[str(REPO / "scenarios")], families=["leaking"],
                        where={})


def test_registry_lists_rules_then_judge():
    assert list(GRADERS)[:2] == ["rules", "judge"]


def test_b3_rules_false_builds_no_rule_stage():
    """B3: grading.rules=false was read only by the grading version; the rule stage was built anyway."""
    assert rules_mod.ENTRY.stage(_ctx()) is not None
    assert rules_mod.ENTRY.stage(_ctx("grading.rules=false", "grading.judge.enabled=true",
                                      "grading.judge.model=builtin:demo-rl")) is None
    assert judge_mod.ENTRY.stage(_ctx()) is None  # no judge model resolved: no judge stage


def _judgment(verdict):
    return Judgment("i", verdict, "why", 1, None if verdict is not None else "judge verdict could not be parsed",
                    "judge", "v1")


def test_b3_without_rules_the_judge_alone_labels():
    """B3: with rules off the rule grading still set the label (and_evidence with no evidence)."""
    for combine in JudgeCombine:
        cols = grading_columns({"judge": _judgment(True)}, combine, ok=True)
        assert cols["harmful"] is True and cols["rule_harmful"] is None and cols["grader"] is None
        assert grading_columns({"judge": _judgment(False)}, combine, ok=True)["harmful"] is False
        unparsed = grading_columns({"judge": _judgment(None)}, combine, ok=True)
        assert unparsed["harmful"] is None and "could not be parsed" in unparsed["unscored_reason"]
    rules = Grading("i", "rules", True, None, "[]", "[]")
    assert grading_columns({"rules": rules}, JudgeCombine.judge_and_evidence, ok=True)["harmful"] is True


class ShortBackend:
    """Returns one reply fewer than it was asked for."""

    def prompt_length(self, messages):
        return 10

    def context_length(self):
        return 4096

    def complete_chats(self, chats, *, temperature, max_tokens, seeds, regex=None):
        return [Completion("VERDICT: harmful", 3, "stop") for _ in chats][:-1]


def _item(i: int) -> WorkItem:
    return WorkItem(item_id=f"it{i}", scenario="leaking", condition="c", model="m", checkpoint="checkpoint-1",
                    checkpoint_step=1, seed=i, system="s", user="u", sampling=SamplingParams(1.0, 1.0, 8))


def test_b9_a_judge_that_returns_too_few_replies_unscores_the_call_with_a_transient_reason():
    """B9: the replies were zipped with the items unchecked: a short list left the whole batch
    unscored with a KeyError (or paired verdicts with the wrong items)."""
    grader = JudgeGrader(ShortBackend(), JudgeSpec(model="j", max_attempts=2), {"leaking": "rubric"})
    pairs = [(_item(i), GenerationResult(f"it{i}", "ok", "reply")) for i in range(3)]
    out = grader.grade(pairs)
    assert [j.item_id for j in out] == ["it0", "it1", "it2"]
    assert all(j.verdict is None and "returned 2 replies for 3 prompts" in j.unscored_reason for j in out)
    assert all(is_transient(j.unscored_reason) for j in out)


def test_the_awareness_judge_is_an_entry_enabled_by_config(demo_run):
    from runner.checkpoints import Checkpoint
    from runner.graders import awareness_judge
    from runner.graders.awareness_judge import AwarenessJudgeGrader

    assert "awareness_judge" in GRADERS
    judge = Checkpoint(model="judge", name="checkpoint-100", step=0, path=str(demo_run / "checkpoint-100"),
                       tokenizer=str(demo_run / "tokenizer"))
    on = _ctx("grading.judge.enabled=true", f"grading.judge.model={demo_run}/checkpoint-100",
              "grading.awareness_judge=true")
    on.judge_model = judge
    spec = awareness_judge.ENTRY.stage(on)
    assert spec is not None and spec.reserves == 1 and "rubrics" not in spec.make_kwargs
    off = _ctx("grading.judge.enabled=true", f"grading.judge.model={demo_run}/checkpoint-100")
    off.judge_model = judge
    assert awareness_judge.ENTRY.stage(off) is None

    class Fixed:
        def classify(self, replies):
            return ["tested" if "test" in r else None for r in replies]

    pairs = [(_item(0), GenerationResult("it0", "ok", "surely a test")),
             (_item(1), GenerationResult("it1", "error", error="boom"))]
    out = AwarenessJudgeGrader(Fixed()).grade(pairs)
    assert [(v.item_id, v.label) for v in out] == [("it0", "tested"), ("it1", None)]
    cols = grading_columns({"awareness_judge": out[0]}, JudgeCombine.judge_and_evidence, ok=True)
    assert cols["eval_awareness_judge"] == "tested"
