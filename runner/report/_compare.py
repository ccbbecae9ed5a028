"""One checkpoint against another, for one family (or overall) of one series: paired on
(family, condition, seed) with exact McNemar and Newcombe's interval, or unpaired with the reason."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from runner.stats import mcnemar_exact_pvalue, newcombe_interval, paired_phi, two_proportion_pvalue_two_sided

OVERALL = "overall"


@dataclass
class Comparison:
    """One checkpoint against the baseline, for one family (or overall) of one series."""

    series: str
    family: str
    step: int
    baseline_step: int
    k_base: int
    n_base: int
    k: int
    n: int
    diff: float            # rate - baseline rate (on the pairs when paired)
    lo: float
    hi: float
    p: float               # two-sided
    test: str              # "McNemar exact (paired)" | "two-proportion z (unpaired)"
    pairs: int = 0
    base_only: int = 0     # discordant pairs: harmful at the baseline only
    new_only: int = 0      # discordant pairs: harmful at this checkpoint only
    note: str = ""


def compare(series: str, family: str, base_step: int, base: dict, step: int, new: dict) -> Comparison:
    common = base.keys() & new.keys()
    kb, nb, k, n = sum(base.values()), len(base), sum(new.values()), len(new)
    if not common:
        lo, hi = newcombe_interval(kb, nb, k, n)
        return Comparison(series, family, step, base_step, kb, nb, k, n, k / n - kb / nb, lo, hi,
                          two_proportion_pvalue_two_sided(kb, nb, k, n), "two-proportion z (unpaired)",
                          note="not paired: no (condition, seed) in common with the baseline (other seeds or grid)")
    t = Counter((base[key], new[key]) for key in common)
    both, base_only, new_only, neither = t[(True, True)], t[(True, False)], t[(False, True)], t[(False, False)]
    m = len(common)
    lo, hi = newcombe_interval(both + base_only, m, both + new_only, m, paired_phi(both, base_only, new_only, neither))
    left = (nb - m) + (n - m)
    note = f"{left} rows without a partner left out" if left else ""
    return Comparison(series, family, step, base_step, both + base_only, m, both + new_only, m, (new_only - base_only) / m,
                      lo, hi, mcnemar_exact_pvalue(base_only, new_only), "McNemar exact (paired)", pairs=m,
                      base_only=base_only, new_only=new_only, note=note)


__all__ = ["OVERALL", "Comparison", "compare"]
