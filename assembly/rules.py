"""Per-slot decisions in DESIGN.md §5 order; every decision carries the reason it was made."""

from __future__ import annotations

from datetime import datetime

from assembly.bucketing import gb_hash
from assembly.decision import Decision
from assembly.experiments import assign
from assembly.visitor import Visitor
from integration.model import Slot, Variant


def decide(slot: Slot, visitor: Visitor, now: datetime, switch: str | None) -> Decision:
    """Kill switch, consent, then the best eligible variant, else the baseline."""
    if switch is not None:
        return Decision("baseline", f"kill switch: {switch}")
    if slot.kill_switch:
        return Decision("baseline", f"kill switch: slot {slot.key}")
    if not visitor.consent:
        return Decision("baseline", "no consent for personalization")
    for variant in slot.variants:
        why = eligibility(variant, visitor, now)
        if why is None:
            continue
        if variant.experiment is not None:
            arms = tuple(v for v in slot.variants if v.experiment is variant.experiment)
            return assign(variant.experiment, arms, visitor)
        return Decision("variant", why, variant)
    return Decision("baseline", "no variant matched")


def eligibility(variant: Variant, visitor: Visitor, now: datetime) -> str | None:
    """The reason this variant applies to the visitor, or None when it does not."""
    if not variant.enabled:
        return None
    if (variant.start_at and now < variant.start_at) or (variant.end_at and now >= variant.end_at):
        return None
    why = "everyone"
    if variant.audiences:
        matched = next((a for a in variant.audiences if visitor.in_audience(a)), None)
        if matched is None:
            return None
        why = f"audience {matched.key}"
    if variant.condition is not None:
        if not variant.condition(visitor.doc):
            return None
        why = f"{why} + conditions" if variant.audiences else "conditions"
    if variant.rollout is not None and not _in_rollout(variant, visitor):
        return None
    return why


def _in_rollout(variant: Variant, visitor: Visitor) -> bool:
    """Stable per visitor: the same hash keeps everyone already in when the share grows."""
    value = visitor.hash_value("id")
    if value is None or variant.rollout is None:
        return False
    bucket = gb_hash(f"rollout:{variant.key}", value, 2)
    return bucket is not None and bucket < variant.rollout
