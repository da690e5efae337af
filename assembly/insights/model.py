"""A gradient boosting classifier of conversion, judged on held-out visitors.

HistGradientBoostingClassifier (scikit-learn) on the rules' features (numbers as numbers,
missing as NaN, categories one-hot), a stratified 70/30 split, AUC on the held-out part against
two baselines: the base rate (AUC 0.5 by definition) and the best single rule. Permutation
importance (scoring: AUC, 5 repeats) is computed on the held-out part, never the training part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.inspection import permutation_importance
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from assembly.insights.rules import Rule, column
from assembly.insights.table import Feature, Row, flat

_MIN_CLASS = 5


@dataclass(slots=True)
class ModelResult:
    auc: float
    baseline_auc: float  # the base rate: every visitor gets the same score
    best_rule_auc: float
    best_rule: str
    importance: list[tuple[str, float, float]]  # (feature, mean AUC drop, std)
    roc: tuple[list[float], list[float]]
    train_size: int
    test_size: int


def matrix(rows: list[Row], features: list[Feature]) -> tuple[npt.NDArray[Any], list[str]]:
    flats = [flat(row.context) for row in rows]
    columns, names = [], []
    for feature in features:
        values = column(rows, flats, feature)
        if feature.kind == "category":
            for value in sorted(set(values.tolist()) - {""})[:12]:
                columns.append((values == value).astype(float))
                names.append(f"{feature.path}={value}")
        else:
            columns.append(values.astype(float))
            names.append(feature.path)
    if not columns:
        return np.zeros((len(rows), 0)), names
    return np.column_stack(columns), names


def fit(
    rows: list[Row], features: list[Feature], best: Rule | None, *, seed: int = 0
) -> ModelResult | None:
    """None when there is too little to learn from (a class with fewer than 5 visitors).

    One OpenMP thread: on small batches the thread start-up costs more than it saves, and the
    run stays off the service's other cores."""
    with threadpool_limits(limits=1):
        return _fit(rows, features, best, seed)


def _fit(
    rows: list[Row], features: list[Feature], best: Rule | None, seed: int
) -> ModelResult | None:
    y = np.array([r.converted for r in rows], dtype=int)
    if y.sum() < _MIN_CLASS or (1 - y).sum() < _MIN_CLASS or not features:
        return None
    x, names = matrix(rows, features)
    rule_x = best.mask.astype(float) if best is not None else np.zeros(len(rows))
    idx = np.arange(len(rows))
    train, test = train_test_split(idx, test_size=0.3, stratify=y, random_state=seed)
    clf = HistGradientBoostingClassifier(
        max_iter=100, learning_rate=0.05, max_depth=3, min_samples_leaf=30, random_state=seed
    )
    clf.fit(x[train], y[train])
    scores = clf.predict_proba(x[test])[:, 1]
    perm = permutation_importance(
        clf, x[test], y[test], scoring="roc_auc", n_repeats=5, random_state=seed
    )
    ranked = sorted(
        zip(names, perm.importances_mean, perm.importances_std, strict=True),
        key=lambda t: -t[1],
    )
    fpr, tpr, _ = roc_curve(y[test], scores)
    return ModelResult(
        auc=float(roc_auc_score(y[test], scores)),
        baseline_auc=0.5,
        best_rule_auc=float(roc_auc_score(y[test], rule_x[test])),
        best_rule=best.feature if best is not None else "",
        importance=[(n, float(m), float(s)) for n, m, s in ranked],
        roc=([float(v) for v in fpr], [float(v) for v in tpr]),
        train_size=len(train),
        test_size=len(test),
    )
