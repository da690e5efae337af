"""A validated artifact compiled for the hot path: plain floats, a sparse dot product.

A page view encodes the visitor once (`VisitorScores`, one per request) and scores each
variant of a slot with a few multiply-adds over the visitor's non-zero features; nothing is
allocated per variant but the result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from assembly.decisions.visitor import Visitor
from assembly.learning.artifact import ArtifactDoc
from assembly.learning.features import Encoder, Sparse
from integration.model import Variant


class Linear(NamedTuple):
    """One variant's logistic model (a tuple: the hot loop unpacks it)."""

    intercept: float
    weights: tuple[float, ...]


def _sigmoid(z: float, weights: tuple[float, ...], x: Sparse) -> float:
    """The logistic of `z` plus the sparse dot product of `weights` and `x` (`rank` inlines
    the same arithmetic in its loop: the hot path)."""
    for index, value in x:
        z += weights[index] * value
    if z < -30:
        return 0.0
    return 1.0 / (1.0 + _exp(-z))


_exp = math.exp
# `Ranked(...)` runs the NamedTuple's Python-level `__new__`; the hot path builds the tuple
# directly (the same object, a call less per conflict).
_new = tuple.__new__


class Ranked(NamedTuple):
    """Tied variants under the model: each one's predicted conversion chance in order (None:
    a variant the model has not seen), the top one's index, the runner-up's, and the
    confidence `(p1 - p2) / p1`: how much better the top variant is predicted to convert than
    the next best. Without a ranking (a variant unseen, no runner-up, nothing converts) the
    indexes are -1 and the confidence is -1.0, below every threshold."""

    probs: list[float | None]
    best: int = -1
    runner: int = -1
    sure: float = -1.0


class CompiledModel:
    def __init__(self, doc: ArtifactDoc) -> None:
        self.version = doc.version
        self.goal = doc.goal
        self.encoder = Encoder(doc.specs())
        self.slots: dict[str, dict[str, Linear]] = {
            slot_key: {k: Linear(v.intercept, v.weights) for k, v in slot.variants.items()}
            for slot_key, slot in doc.slots.items()
        }


class VisitorScores:
    """One visitor's scores under one model, its feature vector read on first use."""

    __slots__ = ("_x", "model", "visitor")

    def __init__(self, model: CompiledModel, visitor: Visitor) -> None:
        self.model = model
        self.visitor = visitor
        self._x: Sparse | None = None

    def score(self, slot_key: str, variant_key: str) -> float | None:
        """The predicted conversion chance, or None when the model has no such variant."""
        variants = self.model.slots.get(slot_key)
        linear = variants.get(variant_key) if variants is not None else None
        return _sigmoid(linear.intercept, linear.weights, self._vector()) if linear else None

    def has_slot(self, slot_key: str) -> bool:
        return slot_key in self.model.slots

    def rank(self, slot_key: str, tied: Sequence[tuple[Variant, object]]) -> Ranked | None:
        """Conflict resolution's eligible variants (each with its match) under the model, in
        one loop with the dot products inline (the hot path); None when the model has no
        such slot."""
        variants = self.model.slots.get(slot_key)
        if variants is None:
            return None
        x = self._x
        if x is None:
            x = self._vector()
        probs: list[float | None] = []
        best = runner = -1
        p1 = p2 = -1.0
        i = -1
        for variant, _ in tied:
            i += 1
            linear = variants.get(variant.key)
            if linear is None:  # the model cannot rank what it has not seen
                return _new(Ranked, (self._probs(variants, tied), -1, -1, -1.0))
            z, weights = linear
            for index, value in x:
                z += weights[index] * value
            p = 0.0 if z < -30 else 1.0 / (1.0 + _exp(-z))
            probs.append(p)
            if p > p1:  # ties go to the first (the most recently published)
                best, runner, p1, p2 = i, best, p, p1
            elif p > p2:
                runner, p2 = i, p
        if runner < 0 or p1 <= 0:
            return _new(Ranked, (probs, -1, -1, -1.0))
        return _new(Ranked, (probs, best, runner, (p1 - p2) / p1))

    def _probs(
        self, variants: dict[str, Linear], tied: Sequence[tuple[Variant, object]]
    ) -> list[float | None]:
        x = self._vector()
        return [
            _sigmoid(linear.intercept, linear.weights, x) if linear is not None else None
            for linear in (variants.get(variant.key) for variant, _ in tied)
        ]

    def _vector(self) -> Sparse:
        x = self._x
        if x is None:
            x = self._x = self.model.encoder.encode(self.visitor)
        return x
