"""Statistics of one binary feature against conversion (a 2x2 table), and BH correction.

Pure functions over counts, so they are checked against textbook answers (tests):
- p-value: Fisher's exact test, two-sided (scipy.stats.fisher_exact);
- effect: conversion rate with - without, with a Wald 95 % interval; the odds ratio with
  Woolf's (log) 95 % interval, adding 0.5 to every cell when one is empty (Haldane-Anscombe);
- lift: conversion rate with the feature / the overall rate;
- multiple testing: Benjamini-Hochberg over every rule tested (scipy.stats.false_discovery_control).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

Z95 = float(stats.norm.ppf(0.975))


@dataclass(frozen=True, slots=True)
class TwoByTwo:
    conv_with: int
    n_with: int
    conv_without: int
    n_without: int

    @property
    def rate_with(self) -> float:
        return self.conv_with / self.n_with if self.n_with else 0.0

    @property
    def rate_without(self) -> float:
        return self.conv_without / self.n_without if self.n_without else 0.0

    @property
    def base_rate(self) -> float:
        total = self.n_with + self.n_without
        return (self.conv_with + self.conv_without) / total if total else 0.0


@dataclass(frozen=True, slots=True)
class Effect:
    difference: float
    difference_ci: tuple[float, float]
    odds_ratio: float
    odds_ratio_ci: tuple[float, float]
    lift: float
    p_value: float


def effect(t: TwoByTwo) -> Effect:
    return Effect(
        difference=t.rate_with - t.rate_without,
        difference_ci=difference_ci(t),
        odds_ratio=odds_ratio(t)[0],
        odds_ratio_ci=odds_ratio(t)[1],
        lift=t.rate_with / t.base_rate if t.base_rate else 0.0,
        p_value=fisher_p(t),
    )


def fisher_p(t: TwoByTwo) -> float:
    table = [
        [t.conv_with, t.n_with - t.conv_with],
        [t.conv_without, t.n_without - t.conv_without],
    ]
    return float(stats.fisher_exact(table, alternative="two-sided").pvalue)


def difference_ci(t: TwoByTwo) -> tuple[float, float]:
    p1, p2 = t.rate_with, t.rate_without
    var = 0.0
    if t.n_with:
        var += p1 * (1 - p1) / t.n_with
    if t.n_without:
        var += p2 * (1 - p2) / t.n_without
    half = Z95 * math.sqrt(var)
    return (p1 - p2 - half, p1 - p2 + half)


def odds_ratio(t: TwoByTwo) -> tuple[float, tuple[float, float]]:
    cells = [
        float(t.conv_with),
        float(t.n_with - t.conv_with),
        float(t.conv_without),
        float(t.n_without - t.conv_without),
    ]
    if min(cells) == 0:
        cells = [c + 0.5 for c in cells]
    a, b, c, d = cells
    log_or = math.log(a * d / (b * c))
    se = math.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
    return math.exp(log_or), (math.exp(log_or - Z95 * se), math.exp(log_or + Z95 * se))


def bh_adjust(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (q-values), in the input's order."""
    if not p_values:
        return []
    return [float(q) for q in stats.false_discovery_control(list(p_values), method="bh")]
