"""The page-level steps after the slot decisions, as `DecisionEngine.decide_page` runs them:
engagement sequencing, then `maxPersonalized` (`assembly.decisions.sequencing`, called as is)."""

from __future__ import annotations

from assembly.decisions.sequencing import Placed, cap_personalized, engagement, rerank
from assembly.decisions.visitor import Visitor
from assembly.explain.slots import SlotTrace
from assembly.explain.steps import Step, step
from integration.model import Template

MAX_PERSONALIZED = "maxPersonalized"


def page_steps(
    template: Template | None,
    traces: list[SlotTrace],
    visitor: Visitor,
    now: float,
    half_life: float,
) -> tuple[list[SlotTrace], list[Step]]:
    """The traces in the order shown, with `maxPersonalized` applied; the steps taken."""
    if template is None:
        return traces, [step("page", "skip", "slots asked by key: no template rules")]
    by_key = {t.slot.key: t for t in traces}
    placed: list[Placed] = [(t.slot, t.decision) for t in traces]
    steps = []
    if template.sequencing == "engagement":
        placed = rerank(placed, visitor, now, half_life)
        scores = {
            t.slot.key: {
                "category": t.slot.category,
                "pinned": t.slot.pinned,
                "engagement": engagement(visitor, t.slot.category, now, half_life),
            }
            for t in traces
        }
        order = ", ".join(slot.key for slot, _ in placed)
        steps.append(step("sequencing", "decided", f"by engagement: {order}", {"slots": scores}))
    else:
        steps.append(step("sequencing", "skip", "fixed: the template's order"))
    steps.append(_cap(template, placed, by_key))
    return [by_key[slot.key] for slot, _ in placed], steps


def _cap(template: Template, placed: list[Placed], by_key: dict[str, SlotTrace]) -> Step:
    limit = template.max_personalized
    if limit is None:
        return step(MAX_PERSONALIZED, "skip", "no cap on personalized slots")
    capped = cap_personalized(placed, limit)
    turned = []
    for (slot, before), (_, after) in zip(placed, capped, strict=True):
        if after is not before:
            trace = by_key[slot.key]
            trace.decision, trace.decided_by = after, MAX_PERSONALIZED
            turned.append(slot.key)
    count = sum(d.personalized for _, d in placed)
    read = {"limit": limit, "personalized": count, "turnedToBaseline": turned}
    if not turned:
        return step(MAX_PERSONALIZED, "pass", f"{count} personalized, limit {limit}", read)
    detail = f"{count} personalized, limit {limit}: {', '.join(turned)} get their baseline"
    return step(MAX_PERSONALIZED, "decided", detail, read)
