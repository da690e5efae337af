"""Binary rules over the table, each a condition in the condition dialect, tested on conversion.

Booleans give `{"signals.cartAbandoned": true}`, numbers one rule per threshold
(`{"signals.visits": {"$gte": 3}}`, up to 8 thresholds), categories one per value
(`{"traits.plan": "pro"}`), audiences `{"audiences": {"$in": ["vip"]}}`. Every rule tested counts
in the Benjamini-Hochberg family, thresholds included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from assembly.insights.stats import Effect, TwoByTwo, bh_adjust, effect
from assembly.insights.table import Feature, Row, categories, flat

BoolArray = npt.NDArray[np.bool_]
_MAX_THRESHOLDS = 8


@dataclass(slots=True)
class Rule:
    feature: str
    condition: dict[str, Any]
    mask: BoolArray
    counts: TwoByTwo | None = None
    effect: Effect | None = None
    q_value: float = 1.0

    @property
    def coverage(self) -> float:
        return float(self.mask.mean()) if self.mask.size else 0.0


def column(rows: list[Row], flats: list[dict[str, Any]], feature: Feature) -> npt.NDArray[Any]:
    """The feature's values as numbers (NaN when missing), strings for categories."""
    if feature.kind == "audience":
        key = feature.path.split(":", 1)[1]
        return np.array([key in row.context["audiences"] for row in rows], dtype=float)
    if feature.kind == "category":
        return np.array([str(f.get(feature.path, "")) for f in flats], dtype=object)
    values = [f.get(feature.path) for f in flats]
    return np.array([float(v) if v is not None else np.nan for v in values], dtype=float)


def rules_for(rows: list[Row], features: list[Feature]) -> list[Rule]:
    flats = [flat(row.context) for row in rows]
    out: list[Rule] = []
    for feature in features:
        values = column(rows, flats, feature)
        out.extend(_rules(rows, feature, values))
    return [r for r in out if 0 < int(r.mask.sum()) < len(rows)]


def _rules(rows: list[Row], feature: Feature, values: npt.NDArray[Any]) -> list[Rule]:
    path = feature.path
    if feature.kind == "bool":
        return [Rule(path, {path: True}, values == 1.0)]
    if feature.kind == "audience":
        key = path.split(":", 1)[1]
        return [Rule(path, {"audiences": {"$in": [key]}}, values == 1.0)]
    if feature.kind == "category":
        return [Rule(path, {path: v}, values == v) for v in categories(rows, path)]
    return [
        Rule(path, {path: {"$gte": t}}, np.nan_to_num(values, nan=-np.inf) >= t)
        for t in thresholds(values)
    ]


def thresholds(values: npt.NDArray[Any]) -> list[float]:
    present = values[~np.isnan(values)]
    distinct = np.unique(present)
    if distinct.size <= 1:
        return []
    if distinct.size <= _MAX_THRESHOLDS + 1:
        return [_plain(v) for v in distinct[1:]]
    cuts = np.unique(np.quantile(present, np.linspace(0.1, 0.9, _MAX_THRESHOLDS)))
    return [_plain(v) for v in cuts if v > distinct[0]]


def _plain(value: Any) -> float:
    number = float(value)
    return int(number) if number.is_integer() else round(number, 3)


def score_rules(rules: list[Rule], converted: BoolArray) -> list[Rule]:
    """Fill each rule's counts, effect and BH q-value; sorted by q-value, then by lift."""
    for rule in rules:
        rule.counts = TwoByTwo(
            conv_with=int((converted & rule.mask).sum()),
            n_with=int(rule.mask.sum()),
            conv_without=int((converted & ~rule.mask).sum()),
            n_without=int((~rule.mask).sum()),
        )
        rule.effect = effect(rule.counts)
    qs = bh_adjust([r.effect.p_value for r in rules if r.effect is not None])
    for rule, q in zip(rules, qs, strict=True):
        rule.q_value = q
    return sorted(rules, key=lambda r: (r.q_value, -(r.effect.lift if r.effect else 0.0)))


def best_per_feature(rules: list[Rule]) -> list[Rule]:
    """The strongest rule of each feature (the list is sorted already)."""
    seen: set[str] = set()
    out = []
    for rule in rules:
        if rule.feature not in seen:
            seen.add(rule.feature)
            out.append(rule)
    return out
