"""Without a judge, replies the rules left to one are counted apart (`<f>/ambiguous`), outside n."""

from runner.sinks.metrics import checkpoint_metrics


def _row(scenario, harmful, reason=None, status="ok"):
    return {"scenario": scenario, "status": status, "harmful": harmful, "unscored_reason": reason,
            "eval_awareness": None, "judge_verdict": None, "rule_harmful": harmful}


def test_ambiguous_rows_are_counted_apart_from_the_rate():
    rows = [_row("blackmail", None, "needs_judge"), _row("blackmail", None, "needs_judge"),
            _row("blackmail", False), _row("leaking", True), _row("leaking", None, "generation failed")]
    m = checkpoint_metrics(rows)
    assert (m["blackmail/n"], m["blackmail/unscored"], m["blackmail/ambiguous"]) == (1, 2, 2)
    assert m["blackmail/harmful_rate"] == 0.0
    assert (m["leaking/ambiguous"], m["leaking/unscored"]) == (0, 1)
    assert (m["overall/n"], m["overall/ambiguous"]) == (2, 2)
