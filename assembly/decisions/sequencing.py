"""Page-level rules after the slot decisions: engagement sequencing, then `maxPersonalized`.

`sequencing: engagement` re-orders the non-pinned slots by the visitor's engagement score for each
slot's `category` (`signals.engagement.<category>`, decayed since its timestamp in
`signals.at["engagement.<category>"]` when there is one), highest first; pinned slots keep their
positions and equal scores keep the template's order. `maxPersonalized` then keeps the first N
personalized slots of the page as it will be shown (the most engaging ones, when sequenced) and
turns the rest to their baseline. Experiment arms count as personalized, the control too, so that
the cap removes visitors from every arm alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from assembly.decisions.outcome import Decision
from assembly.decisions.scoring import signal_times, timestamp
from assembly.decisions.visitor import Visitor
from integration.model import Slot

Placed = tuple[Slot, Decision]


def engagement(visitor: Visitor, category: str | None, now: float, half_life: float) -> float:
    """The visitor's engagement score for `category`, decayed to `now`; 0 when unknown."""
    if category is None:
        return 0.0
    signals = visitor.doc.get("signals")
    scores = signals.get("engagement") if isinstance(signals, Mapping) else None
    raw = scores.get(category) if isinstance(scores, Mapping) else None
    score = _number(raw)
    if score == 0.0:
        return 0.0
    at = timestamp(signal_times(visitor).get(f"engagement.{category}"))
    if at is None or at >= now:
        return score
    return score * float(0.5 ** ((now - at) / half_life))


def _number(raw: Any) -> float:
    if isinstance(raw, Mapping):  # {"score": x, ...} is accepted too
        raw = raw.get("score")
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return 0.0
    return float(raw)


def rerank(
    placed: Sequence[Placed], visitor: Visitor, now: float, half_life: float
) -> list[Placed]:
    """Non-pinned slots sorted by engagement (stable); pinned slots stay where they are."""
    movable = [p for p in placed if not p[0].pinned]
    ranked = iter(
        sorted(
            movable,
            key=lambda p: -engagement(visitor, p[0].category, now, half_life),
        )
    )
    return [p if p[0].pinned else next(ranked) for p in placed]


def cap_personalized(placed: Sequence[Placed], limit: int) -> list[Placed]:
    """Keep the first `limit` personalized slots; the rest fall back to their baseline."""
    personalized = 0
    for _, decision in placed:
        personalized += decision.personalized
    if personalized <= limit:
        return list(placed)
    kept, capped = 0, []
    for slot, decision in placed:
        if decision.personalized:
            if kept >= limit:
                decision = Decision("baseline", f"maxPersonalized {limit} reached")
            else:
                kept += 1
        capped.append((slot, decision))
    return capped
