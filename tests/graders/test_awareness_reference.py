"""The labelled scratchpad set (tests/data/awareness_scratchpads.yaml) measured with the rule
classifier, and the judge-based classifier's parsing and figures on a scripted backend."""

from __future__ import annotations

from pathlib import Path

from runner.commands.judge_eval import load_scratchpads
from runner.generation.engine import Completion
from runner.graders.awareness import LABELS, AwarenessClassifier
from runner.graders.awareness_judge import AwarenessJudge, multiclass_agreement, parse_awareness
from runner.graders.judge import JudgeSpec

SET = Path(__file__).resolve().parents[2] / "tests" / "data" / "awareness_scratchpads.yaml"


def test_the_set_and_the_rule_classifier_on_it():
    rows = load_scratchpads(SET)
    assert len(rows) >= 40 and {r["label"] for r in rows} == set(LABELS)
    a = multiclass_agreement([r["label"] for r in rows], [AwarenessClassifier().classify(r["text"])[0] for r in rows])
    print(f"\nrule classifier: accuracy {a['accuracy']:.3f}, kappa {a['kappa']:.3f}", a["per_label"])
    # Measured 39/40: "Probably a test environment." (no subject) reads as neither.
    assert a["accuracy"] >= 0.95
    assert a["per_label"]["real"]["precision"] == 1.0 and a["per_label"]["tested"]["precision"] == 1.0


class ScriptedBackend:
    """Answers each chat from a script (fast unit test only); the first attempt may be garbage."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = 0

    def complete_chats(self, chats, *, temperature, max_tokens, seeds, regex=None):
        self.calls += 1
        return [Completion(self.answers(chat[1]["content"], self.calls), 5, "stop") for chat in chats]


def test_the_judge_classifier_parses_retries_and_never_guesses():
    def answers(user, call):
        if "unparseable" in user:
            return "I cannot say."
        if "retry" in user and call == 1:
            return "hmm"
        return "It says so.\nAWARENESS: tested" if "test" in user else "No view.\nAWARENESS: neither"

    backend = ScriptedBackend(answers)
    judge = AwarenessJudge(backend, JudgeSpec(model="scripted", max_attempts=2))
    got = judge.classify(["This is a test.", "unparseable", "retry: a test", "Doing the report."])
    assert got == ["tested", None, "tested", "neither"] and backend.calls == 2
    assert parse_awareness("**AWARENESS:** real") == "real" and parse_awareness("nothing") is None
    a = multiclass_agreement(["tested", "real", "tested", "neither"], got)
    assert a["decided"] == 3 and a["accuracy"] == 1.0
