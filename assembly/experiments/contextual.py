"""Contextual bandit (`mode: contextual`): linear Thompson sampling over a fixed feature vector.

Each arm has a Bayesian linear (ridge) model of conversion on the visitor's features
`x = (1, f_1, ..., f_d)` (an intercept, then `assembly.learning.features`: the leaves the
ranking model reads):

    A = ridge x I + X'X,  b = X'y,  mean = A^-1 b,  covariance = noise x A^-1

with `noise` the arm's smoothed Bernoulli variance p(1 - p), p = (1 + conversions) /
(2 + exposures). For one visitor, Thompson sampling draws theta from each arm's posterior and
shows the arm with the largest x'theta; since only x'theta matters, drawing it directly from its
marginal N(x'mean, x' cov x) is the same choice, and costs one sparse dot product and one
sparse quadratic form per arm. The draws come from one hash of the experiment, the parameters'
version and the visitor (`uniforms`: 8 bytes per number), so a visitor gets the same arm on
every replica (and the decision state then keeps it). An exploration floor sends a `floor`
share per arm to an arm picked by the hash alone.

Fitting (`fit_arm`) uses NumPy, off the hot path; choosing (`Policy.choose`) is plain Python.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from assembly.learning.features import Encoder, Sparse

_NORMAL = NormalDist()
_INV_SCALE = 1.0 / float(1 << 53)
_WORDS = [struct.Struct(f">{n}Q") for n in range(9)]


def _numpy() -> Any:
    import numpy as np

    return np


@dataclass(frozen=True, slots=True)
class ArmModel:
    """One arm's posterior: `mean` (d + 1), `cov` (row-major, (d + 1)^2), exposures seen."""

    label: str
    mean: tuple[float, ...]
    cov: tuple[tuple[float, ...], ...]
    exposures: int = 0
    conversions: int = 0

    def moments(self, x: Sparse) -> tuple[float, float]:
        """(x'mean, x'cov x) with the intercept at index 0 and feature i at index i + 1."""
        mean, cov = self.mean, self.cov
        head = cov[0]
        m = mean[0]
        v = head[0]
        for i, a in x:
            m += mean[i + 1] * a
            row = cov[i + 1]
            v += 2.0 * head[i + 1] * a
            for j, b in x:
                v += row[j + 1] * a * b
        return m, v if v > 0.0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "mean": list(self.mean),
            "cov": [list(r) for r in self.cov],
            "exposures": self.exposures,
            "conversions": self.conversions,
        }


def noise_of(exposures: int, conversions: int) -> float:
    p = (1 + conversions) / (2 + exposures)
    return p * (1 - p)


def fit_arm(label: str, rows: Any, outcomes: Any, ridge: float, size: int) -> ArmModel:
    """The posterior of one arm from its design rows (n x size, intercept first) and 0/1
    outcomes: mean = (ridge I + X'X)^-1 X'y, covariance = noise (ridge I + X'X)^-1."""
    np = _numpy()
    x = np.asarray(rows, dtype=np.float64).reshape(-1, size)
    y = np.asarray(outcomes, dtype=np.float64).reshape(-1)
    d = size
    a = ridge * np.eye(d) + x.T @ x
    a_inv = np.linalg.inv(a)
    mean = a_inv @ (x.T @ y)
    conversions = int(y.sum())
    cov = noise_of(len(y), conversions) * a_inv
    return ArmModel(
        label,
        tuple(float(v) for v in mean),
        tuple(tuple(float(v) for v in row) for row in cov),
        len(y),
        conversions,
    )


def uniforms(seed: str, value: str, count: int) -> list[float]:
    """`count` uniform numbers in (0, 1) from a hash of `seed` and the visitor's hash value:
    the i-th is the i-th 8 bytes of BLAKE2b (64-byte blocks, the block number in the key)."""
    data = f"{seed}|{value}".encode()
    if count <= 8:  # one block (salt zero: BLAKE2b's default)
        words = _WORDS[count].unpack(hashlib.blake2b(data, digest_size=8 * count).digest())
        return [((n >> 11) + 0.5) * _INV_SCALE for n in words]
    out: list[float] = []
    block = 0
    while len(out) < count:
        size = min(8, count - len(out))
        salt = block.to_bytes(16, "big")
        words = _WORDS[size].unpack(hashlib.blake2b(data, digest_size=8 * size, salt=salt).digest())
        out.extend(((n >> 11) + 0.5) * _INV_SCALE for n in words)
        block += 1
    return out


class Policy:
    """One experiment's compiled parameters: what a page view's choice reads."""

    __slots__ = ("arms", "encoder", "floor", "key", "labels", "scale", "version")

    def __init__(
        self,
        key: str,
        version: int,
        encoder: Encoder,
        arms: Sequence[ArmModel],
        floor: float,
        scale: float = 1.0,
    ) -> None:
        self.key = key
        self.version = version
        self.encoder = encoder
        self.arms = tuple(arms)
        self.labels = tuple(a.label for a in arms)
        self.floor = floor
        self.scale = scale

    def choose(self, x: Sparse, value: str) -> str:
        """The arm label for this visitor (features `x`, hash value `value`)."""
        count = len(self.arms)
        u = uniforms(f"{self.key}:{self.version}", value, count + 1)
        if u[0] < self.floor * count:
            return self.labels[min(int(u[0] / self.floor), count - 1)]
        best, top = self.labels[0], -math.inf
        for arm, draw in zip(self.arms, u[1:], strict=False):
            mean, var = arm.moments(x)
            drawn = mean + self.scale * _NORMAL.inv_cdf(draw) * math.sqrt(var)
            if drawn > top:
                best, top = arm.label, drawn
        return best

    def means(self, x: Sparse) -> dict[str, float]:
        return {arm.label: arm.moments(x)[0] for arm in self.arms}

    def reading(self, x: Sparse) -> dict[str, Any]:
        """What a choice reads, for explain: the visitor's non-zero features, each arm's
        expected conversion and its spread (x'mean, sqrt(x' cov x)), the floor."""
        specs = self.encoder.specs
        arms = {}
        for arm in self.arms:
            mean, var = arm.moments(x)
            arms[arm.label] = {"mean": mean, "sd": math.sqrt(var)}
        return {
            "version": self.version,
            "features": {specs[i].name: value for i, value in x},
            "arms": arms,
            "minExploration": self.floor,
            "scale": self.scale,
        }
