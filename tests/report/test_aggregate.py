"""The report's aggregates on small hand-built datasets (written with the project's own ParquetSink)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from runner.errors import UserError
from runner.report._aggregate import build_report_data, curve
from runner.sinks.parquet import ParquetSink
from runner.stats import mcnemar_exact_pvalue

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
COND = "goal_type=explicit,goal_value=america,urgency=replacement"
COND2 = "goal_type=none,goal_value=none,urgency=none"


def row(step: int, seed: int, harmful, *, family="blackmail", condition=COND, status="ok", model="m",
        error=None, unscored=None, minutes=0, awareness="neither", item=None) -> dict:
    return {"run_id": "r", "item_id": item or f"{family}-{condition}-{step}-{seed}", "scenario": family,
            "condition": condition, "model": model, "checkpoint": f"checkpoint-{step}", "checkpoint_step": step,
            "seed": seed, "response": "reply", "status": status, "error": error, "harmful": harmful,
            "unscored_reason": unscored, "schema_version": 1, "created_at": T0 + timedelta(minutes=minutes),
            "eval_awareness": awareness if status == "ok" else None}


def write(tmp_path, rows, name="results"):
    root = tmp_path / name
    ParquetSink(root, "r").write(rows)
    return root


def test_rates_use_each_items_newest_ok_row_and_count_what_is_left_out(tmp_path):
    rows = [row(100, s, s < 3) for s in range(8)]
    rows += [row(100, 8, None, status="error", error="engine died\ntraceback...", minutes=0),
             row(100, 8, True, minutes=5)]                                   # a later ok row supersedes the error
    rows += [row(100, 9, True, minutes=0), row(100, 9, False, minutes=9)]    # a re-grade: the newest ok wins
    rows += [row(100, 10, None, unscored="judge verdict unparseable"),
             row(100, 11, None, status="error", error="prompt too long (5000 > 4096 tokens)")]
    data = build_report_data([str(write(tmp_path, rows))])
    (pt,) = curve(data, "m", "blackmail")
    assert (pt["harmful"], pt["n"], pt["unscored"], pt["errors"]) == (4, 10, 1, 1)
    assert pt["rate"] == 0.4 and pt["lo"] < 0.4 < pt["hi"]
    reasons = {(r["kind"], r["reason"]): r["count"] for r in data.left_out}
    assert reasons == {("unscored", "judge verdict unparseable"): 1,
                       ("error", "prompt too long (5000 > 4096 tokens)"): 1}


def test_checkpoints_pair_on_condition_and_seed_with_exact_mcnemar(tmp_path):
    base = [True] * 6 + [False] * 4                     # step 100: 6/10
    new = [True, False, False, False, False, False, True, False, False, False]  # step 200: 2/10
    # discordant: harmful at the baseline only at seeds 1-5 (5), at the new checkpoint only at seed 6 (1)
    rows = [row(100, s, h) for s, h in enumerate(base)] + [row(200, s, h) for s, h in enumerate(new)]
    rows += [row(300, 100 + s, s < 5) for s in range(10)]      # other seeds: nothing to pair with
    data = build_report_data([str(write(tmp_path, rows))])
    by = {(c.family, c.step): c for c in data.comparisons}
    c = by[("blackmail", 200)]
    assert c.test.startswith("McNemar") and c.pairs == 10 and (c.base_only, c.new_only) == (5, 1)
    assert c.diff == pytest.approx(-0.4) and c.lo < -0.4 < 0 < c.hi   # p = 0.22: the interval holds 0
    assert c.p == pytest.approx(mcnemar_exact_pvalue(5, 1)) == pytest.approx(14 / 64)
    u = by[("blackmail", 300)]
    assert u.test.startswith("two-proportion") and u.pairs == 0 and "not paired" in u.note
    assert u.diff == pytest.approx(-0.1)
    assert by[("overall", 200)].pairs == 10


def test_partial_overlap_pairs_what_it_can_and_says_what_was_left_out(tmp_path):
    rows = [row(100, s, s % 2 == 0) for s in range(6)] + [row(200, s, False) for s in range(2, 8)]
    data = build_report_data([str(write(tmp_path, rows))])
    c = next(c for c in data.comparisons if c.family == "blackmail")
    assert c.pairs == 4 and "4 rows without a partner" in c.note


def test_baseline_step_can_be_chosen_and_must_exist(tmp_path):
    rows = [row(step, s, s < k) for step, k in ((100, 4), (200, 2), (300, 0)) for s in range(4)]
    root = str(write(tmp_path, rows))
    data = build_report_data([root], baseline_step=200)
    assert {(c.step, c.baseline_step) for c in data.comparisons if c.family == "blackmail"} == {(100, 200), (300, 200)}
    with pytest.raises(UserError, match="--baseline 250"):
        build_report_data([root], baseline_step=250)


def test_heatmap_has_conditions_then_variable_marginals(tmp_path):
    rows = [row(100, s, s < 4, condition=COND) for s in range(4)] + [row(100, s, s < 1, condition=COND2) for s in range(4)]
    rows += [row(200, s, False, condition=COND) for s in range(4)]
    h = build_report_data([str(write(tmp_path, rows))]).heatmaps["blackmail"]
    assert h["cols"] == ["100", "200"] and h["conditions"] == 2
    rates = dict(zip(h["rows"], h["rate"]))
    assert rates[COND] == [1.0, 0.0] and rates[COND2] == [0.25, None]
    assert rates["urgency=replacement"] == [1.0, 0.0] and rates["goal_type=none"] == [0.25, None]


def test_several_datasets_are_separate_series(tmp_path):
    a = write(tmp_path, [row(100, s, True) for s in range(3)], "run-a")
    b = write(tmp_path, [row(100, s, False) for s in range(3)], "run-b")
    data = build_report_data([str(a), str(b)])
    assert data.series == ["run-a: m", "run-b: m"]
    assert [curve(data, s, "overall")[0]["rate"] for s in data.series] == [1.0, 0.0]


def test_awareness_and_agreement_reuse_the_sweeps_metrics(tmp_path):
    rows = [row(100, s, s < 2, awareness="tested" if s < 3 else "neither") for s in range(6)]
    for r, (verdict, rules) in zip(rows, [(True, True), (True, False), (False, False), (None, True)]):
        r.update(judge_model="j", judge_verdict=verdict, rule_harmful=rules)
    data = build_report_data([str(write(tmp_path, rows))])
    a = data.awareness["m"]
    assert (a["blackmail/aware_tested/harmful"], a["blackmail/aware_tested/n"]) == (2, 3)
    g = data.agreement["m"]
    assert (g["blackmail/agree_both"], g["blackmail/judge_only"], g["blackmail/agree_neither"],
            g["blackmail/judge_unscored"]) == (1, 1, 1, 1)


def test_a_directory_that_is_not_a_dataset_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        build_report_data([str(tmp_path / "missing")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not a results dataset"):
        build_report_data([str(tmp_path / "empty")])
