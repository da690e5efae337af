"""Conflict resolution among eligible variants of equal priority: a weighted score.

score = specificity weight * audience specificity + recency weight * signal recency
        + model weight * model score

* Audience specificity: how narrowly the best matching audience (plus the variant's own
  conditions) picks the visitor: one point for segments, one for personas, one per condition
  test; `n` points score `n / (n + 1)` (everybody: 0, one test: 0.5, three: 0.75).
* Recency of the triggering signal: the freshest timestamp among the signals that the matching
  conditions read (and the segments that matched), halved every `recency_half_life_seconds`.
  Timestamps come from the profile's `signals.at` map: signal name (the path under `signals.`,
  e.g. `cartAbandoned`, `dwell.sku-1001`) or `audiences.<segment>` → Unix seconds or ISO time.

* Model score: the ranking model's predicted conversion chance for the variant and the visitor
  (`assembly.learning`, `cli.py train`), when a published model knows the slot and variant;
  0 otherwise.

Ties on the score go to the most recently published variant (the slot's variants are already in
that order within a priority).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from assembly.decisions.visitor import Visitor
from assembly.targeting.compiler import NO_FACTS, ConditionFacts
from integration.model import Audience, Condition, Variant


def facts(condition: Condition | None) -> ConditionFacts:
    return condition.facts if condition is not None else NO_FACTS


def timestamp(value: Any) -> float | None:
    """Unix seconds from a number or an ISO 8601 string; None when unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) / 1000 if value > 1e11 else float(value)  # milliseconds → seconds
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def signal_times(visitor: Visitor) -> Mapping[str, Any]:
    signals = visitor.doc.get("signals")
    times = signals.get("at") if isinstance(signals, Mapping) else None
    return times if isinstance(times, Mapping) else {}


class Scorer:
    def __init__(
        self,
        specificity_weight: float,
        recency_weight: float,
        half_life: float,
        model_weight: float = 1.0,
    ) -> None:
        self.specificity_weight = specificity_weight
        self.recency_weight = recency_weight
        self.half_life = half_life
        self.model_weight = model_weight

    def score(
        self, variant: Variant, visitor: Visitor, now: float, model: float | None = None
    ) -> float:
        best_points, names = -1, set(facts(variant.condition).signals)
        own = facts(variant.condition).tests
        matched: list[Audience | None] = [a for a in variant.audiences if visitor.in_audience(a)]
        matched = matched or [None]
        for audience in matched:
            points = own + _audience_points(audience)
            if points > best_points:
                best_points = points
            if audience is not None:
                names.update(facts(audience.condition).signals)
                names.update(f"audiences.{s}" for s in audience.segments if s in visitor.audiences)
        specificity = best_points / (best_points + 1)
        score = self.specificity_weight * specificity + self.recency_weight * self._recency(
            names, visitor, now
        )
        return score + self.model_weight * model if model is not None else score

    def explain(
        self, variant: Variant, visitor: Visitor, now: float, model: float | None = None
    ) -> dict[str, Any]:
        """`score`, with its parts: the audience points, the signals it dated, their freshest
        timestamp, recency, specificity and the model score (assembly.explain; `score` stays
        the hot path)."""
        own = facts(variant.condition)
        names, best, best_audience = set(own.signals), -1, None
        matched: list[Audience | None] = [a for a in variant.audiences if visitor.in_audience(a)]
        for audience in matched or [None]:
            points = own.tests + _audience_points(audience)
            if points > best:
                best, best_audience = points, audience
            if audience is not None:
                names.update(facts(audience.condition).signals)
                names.update(f"audiences.{s}" for s in audience.segments if s in visitor.audiences)
        specificity = best / (best + 1)
        recency = self._recency(names, visitor, now)
        times = signal_times(visitor)
        score = self.specificity_weight * specificity + self.recency_weight * recency
        return {
            "score": score + self.model_weight * model if model is not None else score,
            "points": best,
            "audience": best_audience.key if best_audience else None,
            "specificity": specificity,
            "recency": recency,
            "signals": {n: times.get(n) for n in sorted(names)},
            "model": model,
            "weights": {
                "specificity": self.specificity_weight,
                "recency": self.recency_weight,
                "model": self.model_weight,
            },
        }

    def _recency(self, names: set[str], visitor: Visitor, now: float) -> float:
        if not names:
            return 0.0
        times = signal_times(visitor)
        freshest = max(
            (t for n in names if (t := timestamp(times.get(n))) is not None), default=None
        )
        if freshest is None:
            return 0.0
        age = max(0.0, now - freshest)
        return float(0.5 ** (age / self.half_life))


def _audience_points(audience: Audience | None) -> int:
    if audience is None:
        return 0
    return (
        (1 if audience.segments else 0)
        + (1 if audience.personas else 0)
        + facts(audience.condition).tests
    )
