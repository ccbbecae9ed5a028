"""Small statistics used in reports and W&B: Wilson intervals, two-proportion and exact McNemar tests."""

from __future__ import annotations

import math


def wilson_interval(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95% Wilson score interval for k successes in n trials; (0, 1) when n == 0."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


def two_proportion_pvalue(k1: int, n1: int, k2: int, n2: int) -> float:
    """One-sided p-value that rate 2 (k2/n2) exceeds rate 1 (k1/n1): pooled two-proportion z-test."""
    if n1 <= 0 or n2 <= 0:
        return 1.0
    pooled = (k1 + k2) / (n1 + n2)
    if pooled in (0.0, 1.0):
        return 1.0
    z = (k2 / n2 - k1 / n1) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return 0.5 * math.erfc(z / math.sqrt(2))


def two_proportion_pvalue_two_sided(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided p-value of the pooled two-proportion z-test (rates k1/n1 and k2/n2 differ)."""
    one_sided = two_proportion_pvalue(k1, n1, k2, n2)
    return min(1.0, 2 * min(one_sided, 1 - one_sided))


def mcnemar_exact_pvalue(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test of b against b + c discordant pairs at 1/2."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    # log-space terms: n can reach the tens of thousands, where 0.5**n underflows.
    tail = sum(math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2))
               for i in range(k + 1))
    return min(1.0, 2 * tail)


def newcombe_interval(k1: int, n1: int, k2: int, n2: int, phi: float = 0.0) -> tuple[float, float]:
    """95% interval for the difference k2/n2 - k1/n1 from the two Wilson intervals (Newcombe 1998).

    phi = 0: independent samples (Newcombe's method 10). For paired samples pass the correlation
    of the pairs (`paired_phi`): that is Newcombe's method 10 for paired differences.
    """
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson_interval(k1, n1)
    l2, u2 = wilson_interval(k2, n2)
    below = (p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2
    above = (u2 - p2) ** 2 - 2 * phi * (u2 - p2) * (p1 - l1) + (p1 - l1) ** 2
    d = p2 - p1
    return max(-1.0, d - math.sqrt(max(0.0, below))), min(1.0, d + math.sqrt(max(0.0, above)))


def paired_phi(both: int, first_only: int, second_only: int, neither: int) -> float:
    """The correlation term of Newcombe's paired interval from the pairs' 2x2 table.

    As Newcombe (1998) defines it: a positive cross product difference A is shrunk by n/2
    (0 when that makes it negative), a negative one is kept; 0 when a margin is empty.
    """
    denom = (both + first_only) * (second_only + neither) * (both + second_only) * (first_only + neither)
    if denom == 0:
        return 0.0
    a = both * neither - first_only * second_only
    n = both + first_only + second_only + neither
    if a > n / 2:
        a -= n / 2
    elif a >= 0:
        a = 0
    return a / math.sqrt(denom)


def mcnemar_one_sided_pvalue(worse: int, better: int) -> float:
    """One-sided exact McNemar p-value for "the second is worse": P(X >= worse) for
    X ~ Binomial(worse + better, 1/2), over discordant pairs only."""
    n = worse + better
    if n == 0:
        return 1.0
    tail = sum(math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2))
               for i in range(worse, n + 1))
    return min(1.0, tail)
