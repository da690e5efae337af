"""A validated artifact compiled for the hot path: plain floats, a sparse dot product.

A page view encodes the visitor once (`VisitorScores`, one per request) and scores each
variant of a slot with a few multiply-adds over the visitor's non-zero features; nothing is
allocated per variant but the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from assembly.decisions.visitor import Visitor
from assembly.learning.artifact import ArtifactDoc
from assembly.learning.features import Encoder, Sparse


@dataclass(frozen=True, slots=True)
class Linear:
    intercept: float
    weights: tuple[float, ...]

    def score(self, x: Sparse) -> float:
        weights = self.weights
        z = self.intercept
        for index, value in x:
            z += weights[index] * value
        if z < -30:
            return 0.0
        return 1.0 / (1.0 + math.exp(-z))


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
        scores = self.scores(slot_key, [variant_key])
        return scores[0] if scores else None

    def has_slot(self, slot_key: str) -> bool:
        return slot_key in self.model.slots

    def scores(self, slot_key: str, variant_keys: list[str]) -> list[float | None] | None:
        """`score` of each variant of one slot; None when the model has no such slot."""
        variants = self.model.slots.get(slot_key)
        if variants is None:
            return None
        x = self._x
        if x is None:
            x = self._x = self.model.encoder.encode(self.visitor)
        out: list[float | None] = []
        for key in variant_keys:
            linear = variants.get(key)
            out.append(linear.score(x) if linear is not None else None)
        return out
