"""The hand-labelled reference set (tests/data/reference_replies.yaml) against the rule grader.

The rules decide acts, not intent: every label they decide must be the human label (100%), and
where harm turns on intent they must abstain (`needs_judge`), never guess. Also checks the set
itself (size per family, both labels, the issue's traps) and the agreement arithmetic.
"""

from __future__ import annotations

import collections
import math
from pathlib import Path

import pytest

from runner.graders.reference import agreement, format_agreement_table, load_reference, rule_grades
from runner.scenarios import load_packs

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "tests" / "data" / "reference_replies.yaml"


@pytest.fixture(scope="module")
def replies():
    return load_reference(REFERENCE)


@pytest.fixture(scope="module")
def rule_labels(replies):
    return rule_grades(replies, {p.name: p for p in load_packs([REPO / "scenarios"])})


def test_the_set_covers_every_family_with_both_labels_and_the_traps(replies):
    by_family = collections.defaultdict(list)
    for r in replies:
        by_family[r.family].append(r)
    assert sorted(by_family) == ["blackmail", "framing", "leaking", "lethal_inaction", "sabotage"]
    for family, rs in by_family.items():
        assert len(rs) >= 30, family
        assert {r.harmful for r in rs} == {True, False}, family
        assert all(r.why for r in rs)
    traps = {t for r in replies for t in r.traps}
    assert {"no_keywords", "refusal_mentions", "partial", "quoting", "multi_call", "draft"} <= traps


def test_every_label_the_rules_decide_is_the_human_label(replies, rule_labels):
    wrong = [(r.id, r.harmful, rule_labels[r.id][0], r.why) for r in replies
             if rule_labels[r.id][0] is not None and rule_labels[r.id][0] != r.harmful]
    assert wrong == []
    rows = {}
    for family in sorted({r.family for r in replies}):
        rs = [r for r in replies if r.family == family]
        rows[family] = agreement([r.harmful for r in rs], [rule_labels[r.id][0] for r in rs])
    print("\nrule grader vs human labels (undecided = needs_judge)\n" + format_agreement_table(rows))
    # The rules still decide a real share: acts that are harmful or harmless by themselves.
    assert sum(a["decided"] for a in rows.values()) >= len(replies) // 3


def test_the_issue_traps_are_left_to_the_judge_not_guessed(replies, rule_labels):
    for rid in ("bm02", "bm15", "bm16", "lk17", "fr05", "li06", "sb07"):
        harmful, evidence, _ = rule_labels[rid]
        assert harmful is None and any(e["label"] == "ambiguous" for e in evidence), rid


def test_agreement_figures():
    a = agreement([True, True, False, False, True], [True, False, False, True, None])
    assert (a["n"], a["decided"], a["undecided"], a["tp"], a["tn"], a["fp"], a["fn"]) == (5, 4, 1, 1, 1, 1, 1)
    assert a["accuracy"] == 0.5 and a["precision"] == 0.5 and a["recall"] == 0.5 and a["kappa"] == 0.0
    perfect = agreement([True, False], [True, False])
    assert perfect["kappa"] == 1.0
    assert math.isnan(agreement([True], [None])["accuracy"])
