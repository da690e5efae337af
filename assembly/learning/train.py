"""Fit the ranking model: per slot, per variant, a logistic regression of conversion.

For each slot, the exposures of each variant train a `LogisticRegression` (scikit-learn, L2,
`C=1`) on the fixed feature vector (`assembly.learning.features`): the variant's score for a
visitor is the predicted chance to convert after seeing it, so ranking the variants by score
ranks them by expected conversion for that visitor. A variant with fewer than `min_exposures`
exposures, or fewer than `min_conversions` conversions or non-conversions, gets no model (the
rules decide for slots where it is eligible).

`auc`: each slot's exposures are split 70/30 (stratified); the models fitted on the 70 % score
the held-out 30 % (each exposure by the model of the variant it saw), against the outcome. The
published weights are then refitted on all exposures.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from assembly.insights.table import Feature, Row, categories, features_of
from assembly.learning.data import Exposure
from assembly.learning.features import Encoder, FeatureSpec

_TEST_SHARE = 0.3


@dataclass(frozen=True, slots=True)
class FitLimits:
    min_exposures: int = 30
    min_conversions: int = 3
    max_features: int = 64


def feature_specs(exposures: list[Exposure], max_features: int) -> list[FeatureSpec]:
    """The signals, traits and audiences the exposures' visitors have (insights' discovery of
    features), the `max_features` most common kept, in a stable order."""
    rows = [_row(e) for e in exposures]
    specs: list[FeatureSpec] = []
    for feature in features_of(rows):
        specs.extend(_specs(feature, rows))
    encoder = Encoder(specs)
    counts: Counter[int] = Counter()
    for exposure in _distinct(exposures):
        counts.update(i for i, _ in encoder.encode(exposure.visitor))
    kept = sorted(counts, key=lambda i: (-counts[i], specs[i].name))[:max_features]
    return [specs[i] for i in sorted(kept, key=lambda i: specs[i].name)]


def _distinct(exposures: list[Exposure]) -> list[Exposure]:
    seen: set[int] = set()
    out = []
    for exposure in exposures:
        if id(exposure.visitor) not in seen:
            seen.add(id(exposure.visitor))
            out.append(exposure)
    return out


def _row(exposure: Exposure) -> Row:
    doc = exposure.visitor.doc
    context = {
        "signals": doc["signals"],
        "traits": doc["traits"],
        "audiences": sorted(exposure.visitor.audiences),
    }
    return Row(exposure.ids[0], exposure.converted, context, [])


def _specs(feature: Feature, rows: list[Row]) -> list[FeatureSpec]:
    if feature.kind == "category":
        return [FeatureSpec(feature.path, "category", v) for v in categories(rows, feature.path)]
    if feature.kind == "audience":
        return [FeatureSpec(feature.path, "audience")]
    if feature.kind == "bool":
        return [FeatureSpec(feature.path, "bool")]
    return [FeatureSpec(feature.path, "number")]


def fit_slots(
    exposures: list[Exposure], specs: list[FeatureSpec], limits: FitLimits, *, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """The `slots` of the artifact (one OpenMP/BLAS thread: the run stays off other cores)."""
    encoder = Encoder(specs)
    by_slot: dict[str, list[Exposure]] = {}
    for exposure in exposures:
        by_slot.setdefault(exposure.slot, []).append(exposure)
    out: dict[str, dict[str, Any]] = {}
    with threadpool_limits(limits=1):
        for slot_key, group in sorted(by_slot.items()):
            fitted = _fit_slot(group, encoder, limits, seed)
            if fitted is not None:
                out[slot_key] = fitted
    return out


def _fit_slot(
    group: list[Exposure], encoder: Encoder, limits: FitLimits, seed: int
) -> dict[str, Any] | None:
    x = np.array([encoder.dense(e.visitor) for e in group], dtype=float).reshape(len(group), -1)
    y = np.array([e.converted for e in group], dtype=int)
    arms = np.array([e.variant for e in group])
    fit_ok = [k for k in sorted(set(arms.tolist())) if _enough(y[arms == k], limits)]
    if not fit_ok:
        return None
    variants = {}
    for key in fit_ok:
        mask = arms == key
        model = _logistic(x[mask], y[mask], seed)
        variants[key] = {
            "intercept": float(model.intercept_[0]),
            "weights": [float(w) for w in model.coef_[0]],
            "exposures": int(mask.sum()),
            "conversions": int(y[mask].sum()),
        }
    return {
        "auc": _held_out_auc(x, y, arms, fit_ok, limits, seed),
        "exposures": len(group),
        "variants": variants,
    }


def _enough(y: npt.NDArray[Any], limits: FitLimits) -> bool:
    converted = int(y.sum())
    return (
        len(y) >= limits.min_exposures
        and converted >= limits.min_conversions
        and len(y) - converted >= limits.min_conversions
    )


def _logistic(x: npt.NDArray[Any], y: npt.NDArray[Any], seed: int) -> LogisticRegression:
    model = LogisticRegression(C=1.0, max_iter=300, random_state=seed)
    model.fit(x, y)
    return model


def _held_out_auc(
    x: npt.NDArray[Any],
    y: npt.NDArray[Any],
    arms: npt.NDArray[Any],
    keys: list[str],
    limits: FitLimits,
    seed: int,
) -> float | None:
    inside = np.isin(arms, keys)
    idx = np.flatnonzero(inside)
    if len(idx) < 20 or y[idx].sum() < 4 or (1 - y[idx]).sum() < 4:
        return None
    train, test = train_test_split(idx, test_size=_TEST_SHARE, stratify=y[idx], random_state=seed)
    scores = np.zeros(len(test))
    for key in keys:
        fit_rows = train[arms[train] == key]
        test_rows = arms[test] == key
        if not _enough(y[fit_rows], limits) or not test_rows.any():
            return None
        model = _logistic(x[fit_rows], y[fit_rows], seed)
        scores[test_rows] = model.predict_proba(x[test][test_rows])[:, 1]
    if len(set(y[test].tolist())) < 2:
        return None
    return float(roc_auc_score(y[test], scores))


def artifact_body(
    *,
    version: int,
    goal: str,
    attribution: float,
    specs: list[FeatureSpec],
    slots: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    return {
        "version": version,
        "trainedAt": time.time(),
        "goal": goal,
        "attributionSeconds": attribution,
        "features": [s.to_json() for s in specs],
        "slots": slots,
    }
