"""Every grader the pipeline can run, by name, in the order their stages run.

A new grader is one module with its class and `ENTRY` (see `runner.graders.base`), plus one line
here. `grading.rules=false` (or a judge that is not enabled) means that entry builds no stage.
"""

from __future__ import annotations

from runner.graders import awareness_judge, judge, rules
from runner.graders.base import GraderEntry

GRADERS: dict[str, GraderEntry] = {}


def register(entry: GraderEntry) -> GraderEntry:
    """Add (or replace) a grader; stages run in registration order."""
    GRADERS[entry.name] = entry
    return entry


register(rules.ENTRY)
register(judge.ENTRY)
register(awareness_judge.ENTRY)


__all__ = ["GRADERS", "register"]
