"""Candidate triggers: significant rules that raise conversion, as pasteable conditions.

A candidate is the best rule of its feature with a BH q-value under `alpha`, a lift above 1 and
a coverage of at least `min_coverage`. Each is compiled with the engine's own compiler
(assembly.targeting.compiler.compile_condition) and evaluated on every visitor's context: the
coverage reported is what the compiled condition matches, and a rule whose compiled form
disagrees with the table's mask is dropped (it would not target who the analysis says it
targets).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from assembly.insights.rules import Rule
from assembly.insights.table import Row
from assembly.targeting.compiler import compile_condition


@dataclass(frozen=True, slots=True)
class Candidate:
    condition: dict[str, Any]
    feature: str
    coverage: float
    conversion_rate: float
    lift: float
    q_value: float


def candidates(
    rules: list[Rule],
    rows: list[Row],
    *,
    alpha: float = 0.05,
    min_coverage: float = 0.02,
    top: int = 10,
) -> list[Candidate]:
    out = []
    for rule in rules:
        e = rule.effect
        if e is None or rule.q_value >= alpha or e.lift <= 1 or rule.coverage < min_coverage:
            continue
        matched = _compiled_mask(rule.condition, rows)
        if not np.array_equal(matched, rule.mask):
            continue
        out.append(
            Candidate(
                condition=rule.condition,
                feature=rule.feature,
                coverage=float(matched.mean()),
                conversion_rate=rule.counts.rate_with if rule.counts else 0.0,
                lift=e.lift,
                q_value=rule.q_value,
            )
        )
        if len(out) >= top:
            break
    return out


def _compiled_mask(condition: dict[str, Any], rows: list[Row]) -> Any:
    matches = compile_condition(condition)
    return np.array([matches(row.context) for row in rows], dtype=bool)
