"""The paired and unpaired tests the report uses, against scipy and hand-computed cases."""

from __future__ import annotations

import math

import pytest
from scipy import stats as sps

from runner.stats import (
    mcnemar_exact_pvalue,
    newcombe_interval,
    paired_phi,
    two_proportion_pvalue,
    two_proportion_pvalue_two_sided,
)


@pytest.mark.parametrize("b,c", [(0, 0), (0, 1), (1, 0), (3, 9), (9, 3), (5, 5), (0, 12), (17, 40), (400, 460)])
def test_exact_mcnemar_is_the_two_sided_binomial_test_on_discordant_pairs(b, c):
    expected = 1.0 if b + c == 0 else sps.binomtest(b, b + c, 0.5).pvalue
    assert mcnemar_exact_pvalue(b, c) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_exact_mcnemar_by_hand():
    # 1 vs 5 discordant pairs: 2 * (C(6,0) + C(6,1)) / 2**6 = 14/64
    assert mcnemar_exact_pvalue(1, 5) == pytest.approx(14 / 64)
    assert mcnemar_exact_pvalue(3, 3) == 1.0


def test_exact_mcnemar_does_not_underflow_on_many_pairs():
    p = mcnemar_exact_pvalue(5000, 5400)
    assert 0 < p < 0.01 and p == pytest.approx(sps.binomtest(5000, 10400, 0.5).pvalue, rel=1e-6)


def test_two_sided_two_proportion_matches_the_z_test():
    k1, n1, k2, n2 = 30, 100, 45, 110
    p1, p2 = k1 / n1, k2 / n2
    pooled = (k1 + k2) / (n1 + n2)
    z = (p2 - p1) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    assert two_proportion_pvalue_two_sided(k1, n1, k2, n2) == pytest.approx(2 * sps.norm.sf(abs(z)))
    assert two_proportion_pvalue_two_sided(k2, n2, k1, n1) == pytest.approx(2 * sps.norm.sf(abs(z)))
    assert two_proportion_pvalue(k1, n1, k2, n2) == pytest.approx(sps.norm.sf(z))


def test_newcombe_unpaired_interval_matches_the_published_example():
    # Newcombe (1998), Statistics in Medicine 17:873, table II example (a): 56/70 vs 48/80,
    # method 10 gives 0.0524 to 0.3339 for p1 - p2; here the difference is k2/n2 - k1/n1.
    lo, hi = newcombe_interval(48, 80, 56, 70)
    assert lo == pytest.approx(0.0524, abs=5e-4) and hi == pytest.approx(0.3339, abs=5e-4)


def test_newcombe_paired_interval_matches_a_published_example():
    # Fagerland, Lydersen & Laake, Statistical Analysis of Contingency Tables (2017), ch. 8:
    # Cavo et al. (2012), pairs 59 both / 6 first only / 16 second only / 80 neither; the
    # Newcombe square-and-add interval for first - second is -0.1186 to -0.0046.
    lo, hi = newcombe_interval(59 + 6, 161, 59 + 16, 161, paired_phi(59, 6, 16, 80))
    assert lo == pytest.approx(0.0046, abs=1e-4) and hi == pytest.approx(0.1186, abs=1e-4)


def test_paired_phi_is_zero_when_a_margin_is_empty_or_the_association_is_small():
    assert paired_phi(0, 0, 3, 5) == 0.0
    assert paired_phi(1, 1, 1, 1) == 0.0     # cross product 0 <= n/2
    assert paired_phi(4, 0, 0, 4) == pytest.approx((16 - 4) / 16)
    assert paired_phi(0, 4, 4, 0) == pytest.approx(-1.0)
