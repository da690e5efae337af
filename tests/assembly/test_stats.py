"""Experiment statistics against SciPy (and closed forms) on known inputs."""

from __future__ import annotations

import math

import pytest
from scipy import integrate, stats

from assembly.experiments.stats import (
    chance_to_beat,
    one_sided_worse_p,
    rate,
    relative_uplift,
    srm,
    two_sided_p,
)

# (control conversions, control visitors, variant conversions, variant visitors)
CASES = [
    (100, 1000, 120, 1000),
    (48, 1012, 61, 987),
    (10, 200, 4, 210),
    (500, 10_000, 560, 10_000),
]


@pytest.mark.parametrize(("c_a", "n_a", "c_b", "n_b"), CASES)
def test_two_sided_p_equals_the_chi_square_test_of_the_2x2_table(
    c_a: int, n_a: int, c_b: int, n_b: int
) -> None:
    table = [[c_a, n_a - c_a], [c_b, n_b - c_b]]
    expected = stats.chi2_contingency(table, correction=False).pvalue
    assert two_sided_p(c_a, n_a, c_b, n_b) == pytest.approx(expected, rel=1e-9)


def test_two_sided_p_known_value() -> None:
    # 10% vs 12% of 1000: pooled rate 0.11, se = sqrt(0.11 * 0.89 * 2 / 1000) = 0.0139929,
    # z = 0.02 / se = 1.42930, two-sided p = 2 * (1 - Phi(z)) = 0.152918
    assert two_sided_p(100, 1000, 120, 1000) == pytest.approx(0.152918, abs=1e-6)


def test_two_sided_p_without_data() -> None:
    assert two_sided_p(0, 0, 5, 10) is None
    assert two_sided_p(0, 100, 0, 100) == 1.0  # nobody converted anywhere: no evidence


@pytest.mark.parametrize(("c_a", "n_a", "c_b", "n_b"), CASES)
def test_relative_uplift_delta_method_interval(c_a: int, n_a: int, c_b: int, n_b: int) -> None:
    p_a, p_b = c_a / n_a, c_b / n_b
    variance = (p_b * (1 - p_b) / n_b) / p_a**2 + p_b**2 * (p_a * (1 - p_a) / n_a) / p_a**4
    low, high = stats.norm.interval(0.95, loc=p_b / p_a - 1, scale=math.sqrt(variance))
    uplift = relative_uplift(c_a, n_a, c_b, n_b)
    assert uplift is not None
    assert uplift.relative == pytest.approx(p_b / p_a - 1)
    assert uplift.low == pytest.approx(low)
    assert uplift.high == pytest.approx(high)


def test_relative_uplift_known_value() -> None:
    uplift = relative_uplift(100, 1000, 120, 1000)
    assert uplift is not None
    assert uplift.relative == pytest.approx(0.2)
    # sd = sqrt(0.01056 + 0.01296) = 0.153362; 1.959964 * sd = 0.300583
    assert uplift.low == pytest.approx(-0.100583, abs=1e-5)
    assert uplift.high == pytest.approx(0.500583, abs=1e-5)


def test_relative_uplift_undefined_without_control_conversions() -> None:
    assert relative_uplift(0, 100, 5, 100) is None
    assert relative_uplift(5, 0, 5, 100) is None


def _beat_by_integration(c_a: int, n_a: int, c_b: int, n_b: int) -> float:
    a, b = stats.beta(1 + c_a, 1 + n_a - c_a), stats.beta(1 + c_b, 1 + n_b - c_b)
    low, high = min(a.ppf(1e-12), b.ppf(1e-12)), max(a.ppf(1 - 1e-12), b.ppf(1 - 1e-12))
    value, _ = integrate.quad(lambda x: b.pdf(x) * a.cdf(x), low, high, limit=200)
    return float(value)


@pytest.mark.parametrize(("c_a", "n_a", "c_b", "n_b"), CASES)
def test_chance_to_beat_matches_numerical_integration(
    c_a: int, n_a: int, c_b: int, n_b: int
) -> None:
    expected = _beat_by_integration(c_a, n_a, c_b, n_b)
    assert chance_to_beat(c_a, n_a, c_b, n_b) == pytest.approx(expected, abs=1e-6)


def test_chance_to_beat_is_symmetric_and_even_for_equal_data() -> None:
    assert chance_to_beat(30, 300, 30, 300) == pytest.approx(0.5, abs=1e-9)
    forward = chance_to_beat(100, 1000, 120, 1000)
    backward = chance_to_beat(120, 1000, 100, 1000)
    assert forward is not None
    assert backward is not None
    assert forward + backward == pytest.approx(1.0, abs=1e-9)
    # close to the normal approximation Phi(0.02 / sqrt(0.09/1000 + 0.1056/1000)) = 0.92365
    assert forward == pytest.approx(0.92318, abs=1e-5)
    assert chance_to_beat(1, 0, 1, 1) is None


def test_chance_to_beat_small_counts_closed_form() -> None:
    assert chance_to_beat(0, 0, 1, 1) is None  # no control visitors yet
    # A: Beta(1, 2) (one visitor, no conversion), B: Beta(2, 1) (one visitor, converted):
    # P(B > A) = integral of 2x * (1 - (1 - x)^2) dx over [0, 1] = 5/6
    assert chance_to_beat(0, 1, 1, 1) == pytest.approx(5 / 6)


def test_srm_matches_scipy_chisquare() -> None:
    result = srm([5000, 5300], [0.5, 0.5])
    expected = stats.chisquare([5000, 5300], f_exp=[5150, 5150])
    assert result is not None
    assert result.chi_square == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue)
    assert result.chi_square == pytest.approx(8.7379, abs=1e-3)
    assert result.p_value > 0.001  # not flagged at GrowthBook's threshold


def test_srm_flags_a_broken_split_with_unequal_weights() -> None:
    result = srm([7600, 2400], [0.8, 0.2])
    expected = stats.chisquare([7600, 2400], f_exp=[8000, 2000])
    assert result is not None
    assert result.p_value == pytest.approx(expected.pvalue)
    assert result.p_value < 1e-10
    assert result.expected == (8000.0, 2000.0)


def test_srm_needs_data() -> None:
    assert srm([0, 0], [0.5, 0.5]) is None
    assert srm([10], [1.0]) is None


def test_one_sided_worse_p() -> None:
    # the variant converts worse: the one-sided p is half the two-sided one
    worse = one_sided_worse_p(120, 1000, 100, 1000)
    assert worse == pytest.approx(two_sided_p(120, 1000, 100, 1000) / 2)  # type: ignore[operator]
    better = one_sided_worse_p(100, 1000, 120, 1000)
    assert better is not None
    assert worse is not None
    assert better == pytest.approx(1 - worse)
    assert rate(3, 0) is None
    assert rate(3, 12) == 0.25
