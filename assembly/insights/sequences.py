"""Frequent event sequences before conversion: n-grams of event names, with their lift.

For each n in 1..3, every contiguous run of n event names a visitor produced before the goal
(or in the window, when they did not convert) counts once per visitor. An n-gram is kept when at
least `min_support` of the visitors have it; its lift is the conversion rate of those visitors ÷
the overall conversion rate. Repeated names (`page, page, page`) collapse to one first, so a
sequence says what happened next, not how often.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from assembly.insights.table import Row


@dataclass(frozen=True, slots=True)
class Sequence:
    names: tuple[str, ...]
    visitors: int
    support: float
    conversion_rate: float
    lift: float


def _collapse(names: list[str]) -> list[str]:
    return [n for i, n in enumerate(names) if i == 0 or names[i - 1] != n]


def _grams(names: list[str], longest: int) -> set[tuple[str, ...]]:
    names = _collapse(names)
    return {
        tuple(names[i : i + n]) for n in range(1, longest + 1) for i in range(len(names) - n + 1)
    }


def frequent_sequences(
    rows: list[Row], *, min_support: float = 0.02, longest: int = 3, top: int = 20
) -> list[Sequence]:
    if not rows:
        return []
    having: Counter[tuple[str, ...]] = Counter()
    converting: Counter[tuple[str, ...]] = Counter()
    for row in rows:
        for gram in _grams(row.names, longest):
            having[gram] += 1
            converting[gram] += row.converted
    base = sum(r.converted for r in rows) / len(rows)
    floor = max(1, int(min_support * len(rows)))
    found = [
        Sequence(
            names=gram,
            visitors=count,
            support=count / len(rows),
            conversion_rate=converting[gram] / count,
            lift=(converting[gram] / count) / base if base else 0.0,
        )
        for gram, count in having.items()
        if count >= floor
    ]
    found.sort(key=lambda s: (-s.lift, -s.visitors, s.names))
    return found[:top]
