"""The row shape, in one place: what a sweep, a watcher and a re-grade write to the results
dataset (its Parquet schema is `runner.sinks.parquet.results_schema`).

    generation_row(run_id, item, result, grades, combine, now, version)   # sweep / watch
    regraded_row(run_id, stored_row, grades, combine, version, now)       # runner grade
    unbuildable_row(run_id, stored_row, why, version, now, awareness)     # prompt no longer rebuilds

`grades` is a batch's per-item outputs by grader name (`Batch.grades`, runner.graders.registry):
each grader contributes its own columns, and the final label combines the rules' evidence with
the judge's verdict (`combine_label`). With `grading.rules=false` there is no rule output and the
judge alone labels.
"""

from __future__ import annotations

from typing import Any

from runner.config import JudgeCombine
from runner.generation.engine import GenerationResult
from runner.graders.judge import judge_columns
from runner.graders.label import final_label
from runner.graders.registry import GRADERS
from runner.grid import WorkItem, prompt_digest
from runner.sinks.parquet import SCHEMA_VERSION

# Copied unchanged from the generation row into every re-graded row.
GENERATION_COLUMNS = ("item_id", "scenario", "condition", "model", "checkpoint", "checkpoint_step", "seed",
                      "response", "status", "error", "num_output_tokens", "finish_reason", "temperature", "top_p",
                      "max_tokens", "prompt_digest", "seed_rule")

# Columns that say nothing when there is no reply to grade.
_REPLY_COLUMNS = ("rule_harmful", "eval_awareness", "eval_awareness_evidence")


def grading_columns(grades: dict[str, Any], combine: JudgeCombine, ok: bool) -> dict:
    """Every grading column of a row: each grader's own columns, then the final label."""
    cols: dict[str, Any] = {}
    for entry in GRADERS.values():  # every grader's columns, null where it did not take part
        cols.update(entry.columns(None))
    for name, output in grades.items():
        cols.update(GRADERS[name].columns(output))
    if not ok:
        cols.update({c: None for c in _REPLY_COLUMNS})
    cols["harmful"], cols["unscored_reason"] = final_label(grades, combine, ok)
    return cols


def generation_row(run_id: str, item: WorkItem, res: GenerationResult, grades: dict[str, Any],
                   combine: JudgeCombine, now, grading_version: str | None = None) -> dict:
    return {
        "run_id": run_id, "item_id": item.item_id, "scenario": item.scenario, "condition": item.condition,
        "model": item.model, "checkpoint": item.checkpoint, "checkpoint_step": item.checkpoint_step,
        "seed": item.seed, "response": res.response, "status": res.status, "error": res.error,
        "schema_version": SCHEMA_VERSION,
        "num_output_tokens": res.num_output_tokens, "finish_reason": res.finish_reason,
        "temperature": item.sampling.temperature, "top_p": item.sampling.top_p,
        "max_tokens": item.sampling.max_tokens, "created_at": now,
        **grading_columns(grades, combine, ok=res.status == "ok"),
        "grading_version": grading_version,
        "prompt_digest": prompt_digest(item.system, item.user),
        "seed_rule": item.seed_rule or None,
    }


def regraded_row(run_id: str, gen: dict, grades: dict[str, Any], combine: JudgeCombine, version: str, now) -> dict:
    """A new row: the generation columns as they were, this grading's columns, a new run_id."""
    return {**{c: gen[c] for c in GENERATION_COLUMNS}, "run_id": run_id, "schema_version": SCHEMA_VERSION,
            "created_at": now, **grading_columns(grades, combine, ok=True), "grading_version": version}


def unbuildable_row(run_id: str, gen: dict, why: str, version: str, now, awareness) -> dict:
    """Unscored with the reason; eval awareness needs only the reply, so it is still classified."""
    label, evidence = awareness.classify(gen["response"])
    return {**{c: gen[c] for c in GENERATION_COLUMNS}, "run_id": run_id, "schema_version": SCHEMA_VERSION,
            "harmful": None, "unscored_reason": why, "grader": None, "evidence": None, "tool_calls": None,
            "created_at": now, "rule_harmful": None, **judge_columns(None),
            "eval_awareness": label, "eval_awareness_evidence": evidence, "grading_version": version}


def stored_result(row: dict) -> GenerationResult:
    """A stored `ok` row's reply as generation returned it (with the calls parsed then)."""
    return GenerationResult(row["item_id"], "ok", row["response"] or "", None, row["num_output_tokens"] or 0,
                            row["finish_reason"], tool_calls=row.get("tool_calls"))


__all__ = ["GENERATION_COLUMNS", "final_label", "generation_row", "grading_columns", "regraded_row",
           "stored_result", "unbuildable_row"]
