"""Why a row is unscored (`harmful` null): final reasons of the design vs transient failures.

A final reason is a fact about the reply or the item: the rules left it to a judge
(`needs_judge`), a judge verdict could not be parsed, the prompt can no longer be rebuilt. A
re-run gives the same answer, so it counts as done. A transient reason is a failure of the
machinery (a grader or judge actor died, a server errored): a re-run grades the item again from
its stored reply, without regenerating it, and the exit status is non-zero until it has.

Stages write transient reasons as `<stage> failed: ...` (see `failed`); older datasets also
hold `judge engine error ...`. `combine_label` may prefix a reason with `judge: ` or `rules: `,
so the markers are searched anywhere in the text.
"""

from __future__ import annotations

from runner.graders.engagement import NO_ENGAGEMENT  # the reply never engaged with the scenario (noise)
from runner.scenarios.checks import (
    NEEDS_JUDGE,  # the rules saw the act; whether it harms depends on why
    UNPARSED_TOOL_CALL,  # call-like text no parser could read
)

GENERATION_FAILED = "generation failed"     # the row is an error row; there is no reply to grade

_TRANSIENT_MARKERS = ("grader failed:", "rules failed:", "judge failed:", "judge engine error",
                      "awareness_judge failed:")


def failed(stage: str, why: str) -> str:
    """The transient reason a stage writes when its call failed (actor died, server error)."""
    return f"{stage} failed: {why}"


def is_transient(reason: str | None) -> bool:
    """True for an unscored reason that a re-run should grade again."""
    return bool(reason) and any(m in reason for m in _TRANSIENT_MARKERS)


__all__ = ["GENERATION_FAILED", "NEEDS_JUDGE", "NO_ENGAGEMENT", "UNPARSED_TOOL_CALL", "failed", "is_transient"]
