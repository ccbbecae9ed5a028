"""The grading version: a stable content hash of everything that decides a row's grade.

    version = grading_version(cfg.grading, packs)      # "g-3f2a9c0e5b7d1a46"

Written to every row (`grading_version`), so one dataset can hold several gradings of the same
replies (a sweep's, then one per `runner grade` with another judge or rubric) and tell them
apart; `runner grade` skips items that already have a row of the version it would write.

What goes in: rules on/off and each family's checks; the judge (when enabled) with its model,
backend, server and every setting that changes a verdict, each family's rubric, and the combine
mode; the eval-awareness classifier's version. What stays out: how many actors, cores or GPUs
run it and how an API is reached (concurrency, timeouts, retries, key variable), which change
the speed of grading, not the grade. A judge setting added to JudgeConfig later is in unless
listed in `_JUDGE_RESOURCE_KEYS`: an unneeded new version costs a re-grade, a missing one
would mix gradings.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable

from runner.graders.awareness import CLASSIFIER_VERSION

# Bump when the rule grader's own code (tool-call parsing, check matching) changes its labels.
# 2: `ambiguous` checks (needs_judge), calls parsed at generation graded as stored.
# 3: the formats real models write, normalised values, malformed calls, unparsed_tool_call, no_engagement.
RULE_GRADER_VERSION = 3
_JUDGE_RESOURCE_KEYS = {"num_actors", "cpu_threads_per_actor", "num_gpus_per_actor"}
_API_TRANSPORT_KEYS = {"api_key_env", "require_api_key", "max_concurrency", "timeout_seconds", "max_retries",
                       "backoff_seconds"}


def grading_identity(grading, packs: Iterable) -> dict[str, Any]:
    """The plain data the version hashes (GradingConfig plus the scenario packs graded)."""
    from omegaconf import OmegaConf

    from runner.graders.judge import JUDGE_SYSTEM, rubric_text, rubric_version

    packs = sorted(packs, key=lambda p: p.name)
    ident: dict[str, Any] = {"awareness": CLASSIFIER_VERSION, "rules": bool(grading.rules)}
    if grading.rules:
        ident["rule_grader"] = RULE_GRADER_VERSION
        ident["checks"] = {p.name: _checks_version(p) for p in packs}
    judge = grading.judge
    if judge.enabled:
        settings = OmegaConf.to_container(OmegaConf.structured(judge), enum_to_str=True)
        settings = {k: v for k, v in settings.items() if k not in _JUDGE_RESOURCE_KEYS}
        if settings.get("backend", "vllm") == "vllm":
            settings.pop("api", None)  # the server settings only matter when a server is the judge
        elif isinstance(settings.get("api"), dict):
            settings["api"] = {k: v for k, v in settings["api"].items() if k not in _API_TRANSPORT_KEYS}
        ident["judge"] = settings
        ident["judge_prompt"] = rubric_version(JUDGE_SYSTEM)  # the instructions every verdict follows
        ident["rubrics"] = {p.name: rubric_version(rubric_text(p.rubric, p.harmful_act)) for p in packs}
    if getattr(grading, "awareness_judge", False):
        from runner.graders.awareness_judge import AWARENESS_SYSTEM

        ident["awareness_judge"] = rubric_version(AWARENESS_SYSTEM)
    return ident


def grading_version(grading, packs: Iterable) -> str:
    payload = json.dumps(grading_identity(grading, packs), sort_keys=True, ensure_ascii=False, default=str)
    return "g-" + hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def _checks_version(pack) -> str:
    """The family's declarative checks and tools, as written in the pack (before rendering)."""
    from dataclasses import asdict

    payload = json.dumps({"checks": [asdict(c) for c in pack.checks],
                          "tools": {n: asdict(t) for n, t in sorted(pack.tools.items())}},
                         sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:12]


__all__ = ["RULE_GRADER_VERSION", "grading_identity", "grading_version"]
