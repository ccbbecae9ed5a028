"""What changed: items that flipped between neighbouring checkpoints, and runs compared as runs.

Both pair rows on (family, condition, seed): the sweep gives a (condition, seed) the same
engine seed at every checkpoint and in every run with the same grid (common random numbers),
so the same key at two checkpoints, or in two runs at one step, is one pair.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from runner.report._compare import OVERALL, Comparison, compare

# Flipped items listed per pair of checkpoints; the count above the list is always complete.
FLIPS_LISTED = 100


@dataclass
class Flips:
    """Items of one series whose label changed from one checkpoint to the next one."""

    series: str
    step_from: int
    step_to: int
    pairs: int                                           # keys scored at both steps
    to_harmful: list[tuple] = field(default_factory=list)    # (family, condition, seed)
    to_safe: list[tuple] = field(default_factory=list)


@dataclass
class RunComparison:
    """One other series against the reference series (the first) at one step, for one family."""

    reference: str
    other: str
    comparison: Comparison                               # base = the reference series


def scored_labels(rows: list[dict]) -> dict[str, dict[int, dict[tuple, bool]]]:
    """series -> step -> (family, condition, seed) -> harmful, over ok and scored rows."""
    out: dict[str, dict[int, dict[tuple, bool]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        if r["status"] == "ok" and r["harmful"] is not None and r["checkpoint_step"] is not None:
            out[r["series"]][r["checkpoint_step"]][(r["scenario"], r["condition"], r["seed"])] = bool(r["harmful"])
    return out


def neighbour_flips(labels: dict[str, dict[int, dict[tuple, bool]]], series: list[str]) -> list[Flips]:
    """Per series, per pair of neighbouring steps: the keys harmful at one and not at the other."""
    out = []
    for s in series:
        steps = sorted(labels.get(s, {}))
        for a, b in zip(steps, steps[1:]):
            before, after = labels[s][a], labels[s][b]
            common = sorted(before.keys() & after.keys(), key=_key_order)
            out.append(Flips(s, a, b, len(common),
                             to_harmful=[k for k in common if after[k] and not before[k]],
                             to_safe=[k for k in common if before[k] and not after[k]]))
    return out


def compare_runs(labels: dict[str, dict[int, dict[tuple, bool]]], series: list[str]) -> list[RunComparison]:
    """Every other series against the first, at each step both have, per family and overall.

    Paired (McNemar, Newcombe's paired interval) on the keys both runs scored at that step;
    when they share none (other seeds or another grid) the unpaired test, with that reason.
    """
    if len(series) < 2:
        return []
    ref = series[0]
    out = []
    for other in series[1:]:
        for step in sorted(labels.get(ref, {}).keys() & labels.get(other, {}).keys()):
            base, new = labels[ref][step], labels[other][step]
            families = [OVERALL] + sorted({k[0] for k in base} | {k[0] for k in new})
            for family in families:
                b = {k: v for k, v in base.items() if family == OVERALL or k[0] == family}
                x = {k: v for k, v in new.items() if family == OVERALL or k[0] == family}
                if not (b and x):
                    continue
                c = compare(other, family, step, b, step, x)
                if not c.pairs:
                    c.note = "not paired: no (condition, seed) scored by both runs at this step (other seeds or grid)"
                elif c.note:
                    c.note = c.note.replace("without a partner", "in one run only")
                out.append(RunComparison(ref, other, c))
    return out


def steps_without_partner(labels: dict[str, dict[int, dict[tuple, bool]]], series: list[str]) -> list[str]:
    """Lines naming the steps a series has and the reference series lacks (not compared)."""
    if len(series) < 2:
        return []
    ref_steps = set(labels.get(series[0], {}))
    lines = []
    for other in series[1:]:
        steps = set(labels.get(other, {}))
        for name, only in ((other, steps - ref_steps), (series[0], ref_steps - steps)):
            if only:
                lines.append(f"{name}: step(s) {', '.join(map(str, sorted(only)))} scored in this series only, "
                             f"not compared")
    return list(dict.fromkeys(lines))


def _key_order(key: tuple):
    family, condition, seed = key
    return (family, condition, seed if seed is not None else -1)


__all__ = ["FLIPS_LISTED", "Flips", "RunComparison", "compare_runs", "neighbour_flips", "scored_labels",
           "steps_without_partner"]
