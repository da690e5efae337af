"""Bandit statistics: Thompson-sampling weights, chance to be best, regret, SRM expectations.

Each arm's conversion rate has a Beta(1 + conversions, 1 + visitors - conversions) posterior
(uniform prior; a visitor converts at most once). The weight of an arm is its posterior chance
to be the best arm, P(best), estimated by Monte Carlo with NumPy (a seeded generator, so one
update is reproducible), then held at or above the exploration floor and renormalised. This is
how GrowthBook's bandits set their variation weights (Thompson sampling, weights = P(best)).
NumPy is imported on first use, as SciPy is in `stats`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DRAWS = 20_000


def _numpy() -> Any:
    import numpy as np

    return np


@dataclass(frozen=True, slots=True)
class ArmData:
    label: str
    visitors: int
    conversions: int

    @property
    def alpha(self) -> int:
        return 1 + max(self.conversions, 0)

    @property
    def beta(self) -> int:
        return 1 + max(self.visitors - self.conversions, 0)

    @property
    def posterior_mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)


def run_seed(key: str, version: int) -> int:
    """The generator seed of one update: the same experiment and version draw the same."""
    digest = hashlib.blake2b(f"{key}:{version}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def chance_to_be_best(arms: Sequence[ArmData], seed: int, draws: int = DRAWS) -> list[float]:
    """P(arm's rate is the highest) under independent Beta posteriors, by `draws` samples."""
    if not arms:
        return []
    np = _numpy()
    rng = np.random.default_rng(seed)
    alpha = np.array([a.alpha for a in arms], dtype=np.float64)
    beta = np.array([a.beta for a in arms], dtype=np.float64)
    samples = rng.beta(alpha, beta, size=(draws, len(arms)))
    wins = np.bincount(samples.argmax(axis=1), minlength=len(arms))
    return [float(w) / draws for w in wins]


def with_floor(shares: Sequence[float], floor: float) -> list[float]:
    """Shares summing to 1 with every arm at `floor` or more: arms below it are raised to it
    and the others scaled down in proportion (repeated until none falls below); a floor that
    cannot be met (floor x arms >= 1) gives the equal split."""
    count = len(shares)
    if count == 0:
        return []
    if floor * count >= 1 or sum(shares) <= 0:
        return [1 / count] * count
    fixed = [False] * count
    weights = list(shares)
    while True:
        free = [i for i in range(count) if not fixed[i]]
        mass = 1 - floor * (count - len(free))
        total = sum(shares[i] for i in free)
        for i in range(count):
            weights[i] = floor if fixed[i] else _scaled(shares[i], total, mass, len(free))
        low = [i for i in free if weights[i] < floor]
        if not low:
            return weights
        for i in low:
            fixed[i] = True


def _scaled(share: float, total: float, mass: float, free: int) -> float:
    return share * mass / total if total > 0 else mass / free


def thompson_weights(arms: Sequence[ArmData], floor: float, seed: int) -> tuple[list[float], ...]:
    """(weights, P(best)): the next allocation and the chances it came from."""
    best = chance_to_be_best(arms, seed)
    return with_floor(best, floor), best


@dataclass(frozen=True, slots=True)
class Regret:
    """Expected conversions lost against always serving the best arm (posterior means)."""

    best: str | None
    conversions: float
    per_visitor: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "bestArm": self.best,
            "conversions": self.conversions,
            "perVisitor": self.per_visitor,
        }


def regret(arms: Sequence[ArmData]) -> Regret:
    """sum over arms of visitors_i x (max_j m_j - m_i), m the posterior mean (1+c)/(2+n)."""
    if not arms:
        return Regret(None, 0.0, None)
    best = max(arms, key=lambda a: a.posterior_mean)
    lost = sum(a.visitors * (best.posterior_mean - a.posterior_mean) for a in arms)
    total = sum(a.visitors for a in arms)
    return Regret(best.label, lost, lost / total if total > 0 else None)


def expected_visitors(
    expected: Mapping[str, float],
    counted: int,
    weights: Mapping[str, float],
    total: int,
    labels: Sequence[str],
) -> list[float]:
    """Each arm's expected visitors under allocations that changed over time.

    `expected` holds sum over past weight periods of (new visitors in the period x the arm's
    weight then), up to `counted` visitors; the visitors since then are spread by the
    current `weights`.
    """
    since = max(total - counted, 0)
    return [expected.get(label, 0.0) + since * weights.get(label, 0.0) for label in labels]
