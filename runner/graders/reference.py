"""Hand-labelled reference replies, and agreement figures against their human labels.

    replies = load_reference("tests/data/reference_replies.yaml")
    figures = agreement([r.harmful for r in replies], predictions)   # accuracy, precision, recall, kappa

The set (format in the file's header) is how the rule grader and any judge are measured: the
rules must agree on every reply they decide (`tests/graders/test_reference.py`); a judge's
figures come from `runner judge-eval`. A prediction of None is "not decided" (rules that
abstain with `needs_judge`, a verdict that did not parse) and is counted, not guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from runner.errors import UserError

LABELS = {"harmful": True, "not_harmful": False}


@dataclass(frozen=True)
class ReferenceReply:
    id: str
    family: str
    condition: str
    harmful: bool               # the human label
    why: str
    traps: tuple[str, ...]
    reply: str


def render_call(tool: str, args: dict) -> str:
    """One call in the documented text format (`<tool_use:name>` block)."""
    lines = [f"<tool_use:{tool}>", *(f"{k}: {v}" for k, v in args.items()), f"</tool_use:{tool}>"]
    return "\n".join(lines)


def load_reference(path: str | Path) -> list[ReferenceReply]:
    """The replies of a reference file; UserError (one line) naming the first bad entry."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise UserError(f"reference set {path}: cannot read it ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("replies"), list):
        raise UserError(f"reference set {path}: expected a mapping with a `replies` list")
    default_condition = str(data.get("condition", ""))
    out: list[ReferenceReply] = []
    seen: set[str] = set()
    for i, r in enumerate(data["replies"]):
        where = f"reference set {path}: replies[{i}]"
        if not isinstance(r, dict) or not r.get("id") or not r.get("family"):
            raise UserError(f"{where}: needs an id and a family")
        if r["id"] in seen:
            raise UserError(f"{where}: id '{r['id']}' is used twice")
        seen.add(r["id"])
        if r.get("label") not in LABELS:
            raise UserError(f"{where} ({r['id']}): label must be harmful or not_harmful (got {r.get('label')!r})")
        if "reply" in r:
            reply = str(r["reply"])
        else:
            parts = [str(r["text"])] if r.get("text") else []
            for call in r.get("calls") or []:
                if not isinstance(call, dict) or len(call) != 1:
                    raise UserError(f"{where} ({r['id']}): each call is one mapping `tool: {{arg: value}}`")
                (tool, args), = call.items()
                parts.append(render_call(str(tool), {str(k): str(v) for k, v in (args or {}).items()}))
            reply = "\n".join(parts)
        out.append(ReferenceReply(str(r["id"]), str(r["family"]), str(r.get("condition") or default_condition),
                                  LABELS[r["label"]], str(r.get("why", "")), tuple(r.get("traps") or ()), reply))
    return out


def rule_grades(replies: Sequence[ReferenceReply], packs: dict) -> dict[str, tuple]:
    """Each reply graded by the rules in its family's condition: id -> (harmful, evidence, calls)."""
    from runner.scenarios import grade_reply

    out = {}
    for r in replies:
        pack = packs[r.family]
        out[r.id] = grade_reply(pack.render(pack.condition_from_id(r.condition)), pack, r.reply)
    return out


def agreement(human: Sequence[bool], predicted: Sequence[bool | None]) -> dict[str, float | int]:
    """Agreement of decided predictions with human labels: counts, accuracy, precision, recall,
    Cohen's kappa (NaN where undefined). `undecided` counts predictions of None (left out)."""
    pairs = [(h, p) for h, p in zip(human, predicted) if p is not None]
    tp = sum(1 for h, p in pairs if h and p)
    tn = sum(1 for h, p in pairs if not h and not p)
    fp = sum(1 for h, p in pairs if not h and p)
    fn = sum(1 for h, p in pairs if h and not p)
    n = len(pairs)
    nan = float("nan")
    accuracy = (tp + tn) / n if n else nan
    precision = tp / (tp + fp) if tp + fp else nan
    recall = tp / (tp + fn) if tp + fn else nan
    # Chance agreement from each rater's marginal rate of "harmful".
    expected = ((tp + fp) * (tp + fn) + (tn + fn) * (tn + fp)) / (n * n) if n else nan
    kappa = (accuracy - expected) / (1 - expected) if n and expected != 1 else nan
    return {"n": len(predicted), "decided": n, "undecided": len(predicted) - n, "tp": tp, "tn": tn, "fp": fp,
            "fn": fn, "accuracy": accuracy, "precision": precision, "recall": recall, "kappa": kappa}


def format_agreement_table(rows: dict[str, dict]) -> str:
    """One line per group (family, then `overall`): the figures `agreement` returns."""
    head = f"{'family':<16} {'n':>4} {'decided':>7} {'acc':>6} {'prec':>6} {'recall':>6} {'kappa':>6}  tp/tn/fp/fn"
    lines = [head]
    for group, a in rows.items():
        f = [("   n/a" if v != v else f"{v:6.3f}") for v in (a["accuracy"], a["precision"], a["recall"], a["kappa"])]
        lines.append(f"{group:<16} {a['n']:>4} {a['decided']:>7} {f[0]} {f[1]} {f[2]} {f[3]}  "
                     f"{a['tp']}/{a['tn']}/{a['fp']}/{a['fn']}")
    return "\n".join(lines)


__all__ = ["ReferenceReply", "agreement", "format_agreement_table", "load_reference", "render_call"]
