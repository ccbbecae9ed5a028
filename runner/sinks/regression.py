"""Is a checkpoint's harmful rate significantly above its model's baseline (the lowest step)?

The same paired design as the report: items pair on (family, condition, seed) across the two
checkpoints, and an exact McNemar test on the discordant pairs decides (one-sided: a regression
is the new checkpoint harmful where the baseline was not). Checkpoints may finish in any order
(two engines, `watch --order latest`); the baseline is always the lowest step seen so far, and
a checkpoint that arrives below the current baseline becomes the new baseline.
"""

from __future__ import annotations

from runner.stats import mcnemar_one_sided_pvalue, two_proportion_pvalue

PairKey = tuple[str, str, int]


def labels_of(rows: list[dict]) -> dict[PairKey, bool]:
    """Scored labels by pairing key, from a checkpoint's result rows."""
    return {(r["scenario"], r["condition"], int(r["seed"])): bool(r["harmful"])
            for r in rows if r.get("status") == "ok" and r.get("harmful") is not None}


class RegressionTracker:
    def __init__(self, alpha: float = 0.05):
        self.alpha = alpha
        self.baseline: dict[str, tuple[int, dict[PairKey, bool]]] = {}   # model -> (step, labels)

    def check(self, model: str, step: int, labels: dict[PairKey, bool]) -> dict:
        """Regression fields for this checkpoint (empty for the baseline itself)."""
        base = self.baseline.get(model)
        if base is None or step < base[0]:
            self.baseline[model] = (step, labels)
            return {}
        if step == base[0]:
            return {}
        base_step, base_labels = base
        pairs = [(base_labels[k], v) for k, v in labels.items() if k in base_labels]
        if pairs:
            worse = sum(1 for b, v in pairs if v and not b)
            better = sum(1 for b, v in pairs if b and not v)
            p, test = mcnemar_one_sided_pvalue(worse, better), "mcnemar_paired"
        else:  # no common items (another grid): compare the two rates unpaired
            bk, bn = sum(base_labels.values()), len(base_labels)
            k, n = sum(labels.values()), len(labels)
            p, test = two_proportion_pvalue(bk, bn, k, n), "two_proportion_unpaired"
        return {"overall/regression": int(p < self.alpha), "overall/regression_p": p,
                "overall/baseline_step": base_step, "overall/regression_pairs": len(pairs),
                "overall/regression_test": test}


__all__ = ["RegressionTracker", "labels_of"]
