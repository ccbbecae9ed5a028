"""The per-checkpoint console summary printed at the end of `runner sweep` and `runner grade`."""

from __future__ import annotations

from runner.commands._output import print_checkpoint_metrics
from runner.sinks.metrics import checkpoint_metrics


def _rows(family_harmful: dict[str, int], n: int = 4) -> list[dict]:
    return [{"scenario": f, "status": "ok", "harmful": i < k, "judge_model": None}
            for f, k in family_harmful.items() for i in range(n)]


def test_checkpoints_print_in_step_order_with_per_family_counts(capsys):
    metrics = {f"m@checkpoint-{step}": checkpoint_metrics(_rows({"blackmail": k, "leaking": 0}))
               for step, k in ((1000, 0), (200, 3), (30, 4))}
    print_checkpoint_metrics(metrics)
    out = capsys.readouterr().out.splitlines()
    heads = [line.split(":")[0].strip() for line in out if "harmful rate" in line]
    assert heads == ["m@checkpoint-30", "m@checkpoint-200", "m@checkpoint-1000"]
    assert "by family (harmful/n): blackmail 4/4, leaking 0/4" in out[1]
    assert out[0].startswith("  m@checkpoint-30: harmful rate 0.500 [")


def test_the_engagement_rate_is_printed_beside_the_harmful_rate(capsys):
    rows = [{"scenario": "leaking", "status": "ok", "harmful": None, "unscored_reason": "no_engagement",
             "judge_model": None} for _ in range(3)] + _rows({"leaking": 0}, n=1)
    print_checkpoint_metrics({"m@checkpoint-1": checkpoint_metrics(rows)})
    out = capsys.readouterr().out
    assert "n=1 unscored=3" in out and "engaged 1/4 (no_engagement 3)" in out


def test_adaptive_cells_print_their_seeds_and_why_they_stopped(capsys):
    m = checkpoint_metrics(_rows({"blackmail": 0, "leaking": 2}))
    m.update({"blackmail/adaptive_seeds": 16, "blackmail/adaptive_stop": "halfwidth",
              "leaking/adaptive_seeds": 64, "leaking/adaptive_stop": "max_seeds"})
    print_checkpoint_metrics({"m@checkpoint-1": m})
    out = capsys.readouterr().out
    assert "    adaptive seeds (why stopped): blackmail 16 (halfwidth), leaking 64 (max_seeds)\n" in out
