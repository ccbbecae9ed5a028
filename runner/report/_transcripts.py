"""The transcripts the report embeds: a bounded, stratified selection with prompts and highlights.

A report of 100k rows must still open quickly, so at most `limit` transcripts are embedded,
taken round-robin over (series, checkpoint, family, label) so every filter combination has some;
in each of those the flipped items the report lists come first, so their links land on them. Prompts are re-rendered from the
scenario packs the run used (`_runs/*.yaml`) with `runner.plan.rebuild_item`, which also
checks that the re-rendered prompt is the one the reply was generated from; a prompt that
cannot be rebuilt is shown with the reason instead.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from runner.errors import ScenarioError

REPLY_LIMIT = 6000     # characters of a reply embedded; longer ones are cut, with a note


def label_of(row: dict) -> str:
    if row["status"] != "ok":
        return "error"
    if row["harmful"] is None:
        return "unscored"
    return "harmful" if row["harmful"] else "not harmful"


def flipped_rows(table, series_of_row: list[str], flips: list) -> list[int]:
    """Row indices of the flipped items the report lists, at both checkpoints of each flip."""
    from runner.report._changes import FLIPS_LISTED

    wanted = set()
    for f in flips:
        for key in f.to_harmful[:FLIPS_LISTED] + f.to_safe[:FLIPS_LISTED]:
            wanted.update({(f.series, f.step_from, *key), (f.series, f.step_to, *key)})
    if not wanted:
        return []
    light = table.select(["scenario", "condition", "seed", "checkpoint_step"]).to_pylist()
    return [i for i, (r, s) in enumerate(zip(light, series_of_row))
            if (s, r["checkpoint_step"], r["scenario"], r["condition"], r["seed"]) in wanted]


def select_transcripts(table, series_of_row: list[str], limit: int, first: list[int] = ()) -> list[int]:
    """Row indices to embed: round-robin over strata, in a fixed order; in each stratum the rows
    in `first` come before the others, so they are embedded unless their stratum alone exceeds
    its even share of `limit`."""
    preferred = set(first)
    light = table.select(["item_id", "scenario", "checkpoint_step", "status", "harmful"]).to_pylist()
    strata: dict[tuple, list[tuple[bool, str, int]]] = defaultdict(list)
    for i, (r, s) in enumerate(zip(light, series_of_row)):
        strata[(s, r["checkpoint_step"], r["scenario"], label_of(r))].append((i not in preferred, r["item_id"], i))
    queues = []
    for key in sorted(strata, key=lambda k: tuple((v is None, str(v) if not isinstance(v, int) else v) for v in k)):
        strata[key].sort()    # item_id is a content hash: a fixed pseudo-random order
        queues.append([i for _, _, i in strata[key]])
    picked: list[int] = []
    depth = 0
    while len(picked) < limit and any(depth < len(q) for q in queues):
        for q in queues:
            if depth < len(q) and len(picked) < limit:
                picked.append(q[depth])
        depth += 1
    return sorted(picked)


def pack_dirs_of(datasets: list[str]) -> list[Path]:
    """The scenario pack directories the runs used, from their `_runs/<run_id>.yaml` (built-in packs if none)."""
    import yaml

    from runner.plan import BUILTIN_SCENARIOS

    dirs: list[Path] = []
    for root in datasets:
        for run in sorted(Path(root).glob("_runs/*.yaml")):
            try:
                scen = (yaml.safe_load(run.read_text(encoding="utf-8")) or {}).get("scenarios") or {}
            except (OSError, yaml.YAMLError):
                continue
            if scen.get("builtin", True):
                dirs.append(BUILTIN_SCENARIOS)
            dirs += [Path(d).expanduser() for d in scen.get("dirs") or []]
    return list(dict.fromkeys(dirs)) or [BUILTIN_SCENARIOS]


def load_packs_for(datasets: list[str]) -> tuple[dict, str | None]:
    """Packs by family name, and why none could be loaded (the browser then shows replies only)."""
    from runner.scenarios import load_packs

    dirs = [d for d in pack_dirs_of(datasets) if d.is_dir()]
    if not dirs:
        return {}, "the scenario pack directories the runs used are not on this machine"
    try:
        # Only the shown conditions are rendered (rebuild_item checks each against its prompt digest).
        return {p.name: p for p in load_packs(dirs, render_all=False)}, None
    except ScenarioError as e:
        return {}, f"the scenario packs do not load: {e.problems[0]}"


def build_transcripts(table, series_of_row: list[str], indices: list[int], packs: dict,
                      packs_problem: str | None) -> tuple[list[dict], dict]:
    """The embedded transcripts, and the prompts they show (one per family and condition)."""
    import pyarrow as pa

    from runner.plan import rebuild_item

    rows = table.take(pa.array(indices, type=pa.int64())).to_pylist()
    rendered: dict = {}
    prompts: dict[str, dict] = {}
    out = []
    for i, r in zip(indices, rows):
        # One prompt per rendered text: rows without a prompt digest (older datasets) are checked
        # on their own item_id, so each gets its own entry.
        key = f"{r['scenario']}|{r['condition']}|{r['prompt_digest'] or r['item_id']}"
        if key not in prompts:
            prompts[key] = _prompt(r, packs, packs_problem, rendered, rebuild_item)
        response = r["response"] or ""
        evidence = _json_list(r["evidence"])
        out.append({
            "series": series_of_row[i], "step": r["checkpoint_step"], "checkpoint": r["checkpoint"],
            "family": r["scenario"], "condition": r["condition"], "seed": r["seed"], "label": label_of(r),
            "awareness": r["eval_awareness"], "item_id": r["item_id"], "prompt": key,
            "reply": response[:REPLY_LIMIT], "cut": max(0, len(response) - REPLY_LIMIT),
            "tool_calls": _json_list(r["tool_calls"]), "evidence": evidence,
            "marks": highlights(response[:REPLY_LIMIT], evidence, r["eval_awareness_evidence"]),
            "reason": r["error"] if r["status"] != "ok" else r["unscored_reason"],
            "judge": r["judge_reasoning"], "judge_verdict": r["judge_verdict"], "finish": r["finish_reason"]})
    # Item order: one item's checkpoints side by side (the page sorts again as the reader asks).
    out.sort(key=lambda t: (t["series"], t["family"], t["condition"], t["seed"] if t["seed"] is not None else -1,
                            t["step"] if t["step"] is not None else -1))
    return out, prompts


def _prompt(row: dict, packs: dict, packs_problem: str | None, rendered: dict, rebuild_item) -> dict:
    if packs_problem:
        return {"error": packs_problem}
    item, why = rebuild_item(row, packs, rendered)
    if item is None:
        return {"error": why}
    return {"system": item.system, "user": item.user}


def _json_list(text: str | None) -> list:
    if not text:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def highlights(reply: str, evidence: list[dict], awareness_evidence: str | None) -> list[list]:
    """[start, end, kind] spans of the reply to mark: the argument values of each tool call a check
    matched (kind = the check's label, e.g. harmful), and the clause that decided eval awareness."""
    spans = []
    for e in evidence:
        args = e.get("args") if isinstance(e, dict) else None
        for value in (args or {}).values():
            value = str(value).strip()
            if len(value) >= 3:
                at = reply.find(value)
                if at >= 0:
                    spans.append([at, at + len(value), str(e.get("label") or "match")])
    if awareness_evidence and len(awareness_evidence.strip()) >= 3:
        at = reply.find(awareness_evidence.strip())
        if at >= 0:
            spans.append([at, at + len(awareness_evidence.strip()), "awareness"])
    spans.sort()
    merged: list[list] = []
    for s in spans:   # overlapping marks would nest; keep the first of any overlap
        if not merged or s[0] >= merged[-1][1]:
            merged.append(s)
    return merged


__all__ = ["build_transcripts", "flipped_rows", "highlights", "label_of", "load_packs_for", "select_transcripts"]
