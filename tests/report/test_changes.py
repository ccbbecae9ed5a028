"""Runs compared as runs, flips between neighbouring checkpoints, and the figures' links and scales."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from runner.report._aggregate import build_report_data
from runner.report._figures import heatmap_table, persistence_figure, tx_link, zero_families
from runner.report._svg import nice_ceiling
from runner.stats import mcnemar_exact_pvalue
from tests.report.test_aggregate import COND, COND2, row, write


def test_flips_list_the_items_whose_label_changed_between_neighbouring_steps(tmp_path):
    # seed 0 stays harmful, seed 1 turns safe at 200, seed 2 turns harmful at 300; seed 3 is never harmful.
    labels = {100: [True, True, False, False], 200: [True, False, False, False], 300: [True, False, True, False]}
    rows = [row(step, s, h) for step, hs in labels.items() for s, h in enumerate(hs)]
    data = build_report_data([str(write(tmp_path, rows))])
    steps = [(f.step_from, f.step_to) for f in data.flips]
    assert steps == [(100, 200), (200, 300)]
    first, second = data.flips
    assert first.pairs == 4 and first.to_safe == [("blackmail", COND, 1)] and first.to_harmful == []
    assert second.to_harmful == [("blackmail", COND, 2)] and second.to_safe == []


def test_second_run_with_a_subset_of_the_items_is_compared_paired(tmp_path):
    a = write(tmp_path, [row(100, s, s < 6) for s in range(8)], "run-a")
    b = write(tmp_path, [row(100, s, s < 1) for s in range(4)], "run-b")     # seeds 0-3 only: a subset
    data = build_report_data([str(a), str(b)])
    overall = next(rc.comparison for rc in data.run_comparisons if rc.comparison.family == "overall")
    assert data.run_comparisons[0].reference == "run-a: m" and data.run_comparisons[0].other == "run-b: m"
    # On the 4 common seeds: run-a harmful on all 4, run-b on seed 0 only: 3 discordant pairs.
    assert (overall.pairs, overall.base_only, overall.new_only) == (4, 3, 0)
    assert overall.k_base == 4 and overall.k == 1 and abs(overall.diff + 0.75) < 1e-12
    assert overall.test == "McNemar exact (paired)" and overall.p == mcnemar_exact_pvalue(3, 0)
    assert overall.lo < overall.diff < overall.hi and "4 rows in one run only" in overall.note


def test_runs_without_common_items_are_compared_unpaired_with_the_reason(tmp_path):
    a = write(tmp_path, [row(100, s, s < 3) for s in range(4)], "run-a")
    b = write(tmp_path, [row(100, s, False) for s in range(10, 14)], "run-b")   # other seeds
    data = build_report_data([str(a), str(b)])
    c = next(rc.comparison for rc in data.run_comparisons if rc.comparison.family == "overall")
    assert c.pairs == 0 and c.test == "two-proportion z (unpaired)" and "not paired" in c.note
    assert (c.k_base, c.n_base, c.k, c.n) == (3, 4, 0, 4)


def test_two_run_report_has_a_difference_column_and_says_steps_not_checkpoints(tmp_path):
    from runner.report import write_report

    a = write(tmp_path, [row(st, s, s < 2) for st in (100, 200) for s in range(4)], "run-a")
    b = write(tmp_path, [row(st, s, False) for st in (100, 200) for s in range(4)], "run-b")
    write_report([str(a), str(b)], tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert 'id="runs"' in html and "difference [95% CI]" in html and "-0.500 [" in html
    assert "2 checkpoint steps (4 series × checkpoint)" in html
    # One legend for the figure, an entry per run, in distinct colours.
    legend = html.split('data-legend="persistence"')[1].split("</ul>")[0]
    assert legend.count("<li ") == 2 and "run-a: m" in legend and "run-b: m" in legend
    assert 'stroke="#1f5fbf"' in legend and 'stroke="#d1492e"' in legend


def test_all_zero_families_are_folded_and_y_scales_fit_the_data(tmp_path):
    rows = [row(st, s, s < k, family="blackmail") for st, k in ((100, 1), (200, 0)) for s in range(10)]
    rows += [row(st, s, False, family="framing") for st in (100, 200) for s in range(10)]
    data = build_report_data([str(write(tmp_path, rows))])
    assert [z["family"] for z in zero_families(data)] == ["framing"]
    svg = persistence_figure(data).html
    assert svg.count('<svg class="panel"') == 2          # overall and blackmail; framing is folded
    assert 'aria-label="framing"' not in svg
    # Rates of 0.1 with Wilson upper bound 0.40: the axis ends at 0.5, not 1.
    assert '>0.5</text>' in svg and '>1</text>' not in svg
    assert nice_ceiling(0.404 * 1.05) == 0.5 and nice_ceiling(0.03) == 0.05 and nice_ceiling(0.9) == 1.0


def test_points_and_heatmap_cells_link_to_their_filter(tmp_path):
    rows = [row(100, s, s < 2, condition=c) for c in (COND, COND2) for s in range(4)]
    data = build_report_data([str(write(tmp_path, rows))])
    svg = persistence_figure(data).html
    assert 'href="#tx:step=100&amp;family=blackmail"' in svg and 'href="#tx:step=100"' in svg
    table = heatmap_table(data, "blackmail")
    assert table.count("n=4</span>") == 2 + 6                # 2 conditions, then 6 variable values
    link = table.split('href="')[1].split('"')[0].replace("&amp;", "&")
    assert parse_qs(link[len("#tx:"):]) == {"step": ["100"], "family": ["blackmail"], "condition": [COND]}
    assert tx_link(family="overall", seed=0, label="") == "#tx:seed=0"


def test_planted_reference_is_drawn_for_a_demo_run_sampled_at_temperature_one(tmp_path):
    run_dir = tmp_path / "demo-run"
    run_dir.mkdir()
    (run_dir / "DEMO_RUN.json").write_text(json.dumps({"planted": {"100": {"harmful_probability": 0.8},
                                                                   "200": {"harmful_probability": 0.5}}}))
    rows = [row(st, s, s < k, family="leaking") for st, k in ((100, 3), (200, 2)) for s in range(4)]
    root = write(tmp_path, rows)
    (root / "_runs").mkdir()
    (root / "_runs" / "r.yaml").write_text(f"models:\n- name: m\n  path: {run_dir}\nsampling:\n  temperature: 1.0\n")
    data = build_report_data([str(root)])
    assert data.reference == {"m": {"family": "leaking", "rates": {100: 0.8, 200: 0.5}}}
    assert 'class="planted"' in persistence_figure(data).html
    (root / "_runs" / "r.yaml").write_text(f"models:\n- name: m\n  path: {run_dir}\nsampling:\n  temperature: 0.7\n")
    assert build_report_data([str(root)]).reference == {}      # the planted probability is for temperature 1
