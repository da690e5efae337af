"""Experiment statistics on conversion counts, with SciPy's distributions.

Per arm against the control (arm 0), conversions being visitors who converted out of visitors
exposed:
- `two_sided_p`: two-proportion z-test with the pooled rate (equals the chi-square test of the
  2x2 table without continuity correction);
- `relative_uplift`: (rate / control rate - 1) with a confidence interval by the delta method;
- `chance_to_beat`: P(rate > control rate) under independent Beta(1 + conversions,
  1 + non-conversions) posteriors (uniform priors), exact (sum over Beta functions) up to a
  million conversions, a normal approximation beyond;
- `srm`: chi-square goodness of fit of the visitors per arm against the intended weights;
- `one_sided_worse_p`: the rollout guardrail's test that a variant converts worse.
SciPy is imported on first use, so the service starts without it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

EXACT_LIMIT = 1_000_000


def _scipy() -> tuple[Any, Any, Any]:
    import numpy as np
    from scipy import special, stats

    return np, special, stats


def rate(conversions: int, visitors: int) -> float | None:
    return conversions / visitors if visitors > 0 else None


def _z(c_a: int, n_a: int, c_b: int, n_b: int) -> float | None:
    if n_a <= 0 or n_b <= 0:
        return None
    pooled = (c_a + c_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se == 0:
        return None
    return (c_b / n_b - c_a / n_a) / se


def two_sided_p(c_a: int, n_a: int, c_b: int, n_b: int) -> float | None:
    """p-value of "B converts differently from A"; None without data on both sides."""
    z = _z(c_a, n_a, c_b, n_b)
    if z is None:
        return None if n_a <= 0 or n_b <= 0 else 1.0
    _, _, stats = _scipy()
    return float(2 * stats.norm.sf(abs(z)))


def one_sided_worse_p(c_base: int, n_base: int, c_var: int, n_var: int) -> float | None:
    """p-value of "the variant converts worse than the base" (small: significantly worse)."""
    z = _z(c_base, n_base, c_var, n_var)
    if z is None:
        return None if n_base <= 0 or n_var <= 0 else 1.0
    _, _, stats = _scipy()
    return float(stats.norm.cdf(z))


@dataclass(frozen=True, slots=True)
class Uplift:
    relative: float
    low: float
    high: float


def relative_uplift(c_a: int, n_a: int, c_b: int, n_b: int, level: float = 0.95) -> Uplift | None:
    """B's rate relative to A's, with a `level` interval (delta method on the ratio)."""
    if n_a <= 0 or n_b <= 0 or c_a == 0:
        return None
    _, _, stats = _scipy()
    p_a, p_b = c_a / n_a, c_b / n_b
    var_a, var_b = p_a * (1 - p_a) / n_a, p_b * (1 - p_b) / n_b
    relative = p_b / p_a - 1
    se = math.sqrt(var_b / p_a**2 + p_b**2 * var_a / p_a**4)
    z = float(stats.norm.ppf(0.5 + level / 2))
    return Uplift(relative, relative - z * se, relative + z * se)


def chance_to_beat(c_a: int, n_a: int, c_b: int, n_b: int) -> float | None:
    """P(B's rate > A's rate) with uniform Beta priors; None without visitors on either side."""
    if n_a <= 0 or n_b <= 0:
        return None
    np, special, stats = _scipy()
    alpha_a, beta_a = 1 + c_a, 1 + n_a - c_a
    alpha_b, beta_b = 1 + c_b, 1 + n_b - c_b
    if alpha_b > EXACT_LIMIT:
        mean_a, var_a = stats.beta.stats(alpha_a, beta_a, moments="mv")
        mean_b, var_b = stats.beta.stats(alpha_b, beta_b, moments="mv")
        return float(stats.norm.sf(0, loc=mean_b - mean_a, scale=math.sqrt(var_a + var_b)))
    i = np.arange(alpha_b, dtype=np.float64)
    terms = (
        special.betaln(alpha_a + i, beta_a + beta_b)
        - np.log(beta_b + i)
        - special.betaln(1 + i, beta_b)
        - special.betaln(alpha_a, beta_a)
    )
    return float(min(1.0, max(0.0, math.exp(special.logsumexp(terms)))))


@dataclass(frozen=True, slots=True)
class SampleRatio:
    chi_square: float
    p_value: float
    expected: tuple[float, ...]


def srm(observed: Sequence[int], weights: Sequence[float]) -> SampleRatio | None:
    """Chi-square test of visitors per arm against the intended shares; None without data."""
    total = sum(observed)
    share = sum(weights)
    if total <= 0 or share <= 0 or len(observed) != len(weights) or len(observed) < 2:
        return None
    expected = [total * w / share for w in weights]
    if any(e <= 0 for e in expected):
        return None
    _, _, stats = _scipy()
    result = stats.chisquare(list(observed), f_exp=expected)
    return SampleRatio(float(result.statistic), float(result.pvalue), tuple(expected))
