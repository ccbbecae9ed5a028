"""For the dead-grader-pool test: the rule grader, whose actor process dies on every batch while
a marker file exists (as an OOM-killed or crashing grader would). Registered under "rules"."""

from __future__ import annotations

import os

from runner.graders import rules
from runner.graders.base import GraderEntry


class DyingRuleGrader(rules.RuleGrader):
    def __init__(self, marker: str, **kwargs):
        super().__init__(**kwargs)
        self.marker = marker

    def grade(self, pairs):
        if os.path.exists(self.marker):
            os._exit(1)
        return super().grade(pairs)


def entry(marker: str) -> GraderEntry:
    def stage(ctx):
        spec = rules.rule_stage(ctx)
        return type(spec)(**{**spec.__dict__, "make_kwargs": {**spec.make_kwargs, "marker": marker}})
    return GraderEntry(name="rules", make=DyingRuleGrader, stage=stage, columns=rules.rule_columns)
