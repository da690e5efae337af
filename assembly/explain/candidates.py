"""Every rule of one candidate variant, in the engine's order (`assembly.decisions.rules.check`):
switched off, schedule, experiment status, audiences, conditions, frequency cap, rollout share.

Each rule is evaluated even after one failed, so the explanation shows all that stands in the
way; the engine stops at the first. Verdicts come from the engine's explainable twins
(`switched_off`, `in_schedule`, `cap_reached`, `rollout_reading`), from `Visitor.in_audience`
and from the compiled conditions themselves.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from assembly.decisions.rules import DecisionEnv, cap_reached, in_schedule, switched_off
from assembly.decisions.visitor import Visitor
from assembly.experiments.assignment import rollout_reading
from assembly.explain.conditions import explain_condition, summary
from assembly.explain.steps import Step, passed, step
from integration.model import Audience, Variant

ROLLOUT = "rollout"


def explain_candidate(
    variant: Variant, visitor: Visitor, now: datetime, env: DecisionEnv
) -> dict[str, Any]:
    rules = [_switch(variant, env), _schedule(variant, now)]
    if variant.experiment is not None:
        rules.append(_status(variant))
    rules.append(_audiences(variant, visitor))
    if variant.condition is not None:
        condition = explain_condition(variant.condition, visitor.doc)
        ok = condition["passed"]
        rules.append(step("conditions", passed(ok), summary(condition), condition))
    if variant.frequency_cap is not None:
        rules.append(_cap(variant, env, now))
    if variant.rollout is not None:
        rules.append(_rollout(variant, visitor))
    return {
        "variant": variant.key,
        "priority": variant.priority,
        "experiment": variant.experiment.key if variant.experiment else None,
        "considered": True,
        "eligible": all(r["outcome"] == "pass" for r in rules),
        "rules": rules,
    }


def rules_pass(candidate: dict[str, Any], *, rollout: bool) -> bool:
    """Whether every rule passed (`rollout=False`: all but the rollout share)."""
    return all(
        r["outcome"] == "pass" for r in candidate["rules"] if rollout or r["rule"] != ROLLOUT
    )


def _switch(variant: Variant, env: DecisionEnv) -> Step:
    off, read = switched_off(variant, env)
    admin = read["adminSwitch"]
    if admin is not None:
        detail = f"admin switch by {admin['by']}: {admin['reason']}"
    elif not variant.enabled:
        detail = "enabled: false in Contentful"
    else:
        detail = "enabled"
    return step("kill switch", passed(not off), detail, read)


def _schedule(variant: Variant, now: datetime) -> Step:
    inside, read = in_schedule(variant, now)
    if inside:
        detail = "inside its schedule" if read["startAt"] or read["endAt"] else "no schedule"
    elif read["startAt"] and now < variant.start_at:  # type: ignore[operator]
        detail = f"starts at {read['startAt']}"
    else:
        detail = f"ended at {read['endAt']}"
    return step("schedule", passed(inside), detail, read)


def _status(variant: Variant) -> Step:
    experiment = variant.experiment
    assert experiment is not None
    ok = experiment.status != "draft"
    detail = f"experiment {experiment.key} is {experiment.status}"
    read = {"experiment": experiment.key, "status": experiment.status}
    return step("experiment status", passed(ok), detail, read)


def _audiences(variant: Variant, visitor: Visitor) -> Step:
    if not variant.audiences:
        return step("audiences", "pass", "everyone (no audience)", {"audiences": []})
    parts = [_audience(a, visitor) for a in variant.audiences]
    first = next((p["audience"] for p in parts if p["matched"]), None)
    if first is not None:
        detail = f"audience {first} matched"
    else:
        detail = "no audience matched: " + "; ".join(_missed(p) for p in parts)
    return step("audiences", passed(first is not None), detail, {"audiences": parts})


def _audience(audience: Audience, visitor: Visitor) -> dict[str, Any]:
    """One audience's parts (segments any-of, personas any-of, condition) and its verdict."""
    part: dict[str, Any] = {"audience": audience.key, "matched": visitor.in_audience(audience)}
    if audience.segments:
        seen = sorted(audience.segments & visitor.audiences)
        part["segments"] = {"anyOf": sorted(audience.segments), "visitorIn": seen}
        part["memberships"] = [_membership(s, audience, visitor) for s in seen]
    if audience.personas:
        seen = sorted(audience.personas & visitor.personas)
        part["personas"] = {"anyOf": sorted(audience.personas), "visitorHas": seen}
    if audience.condition is not None:
        part["condition"] = explain_condition(audience.condition, visitor.doc)
    return part


def _membership(segment: str, audience: Audience, visitor: Visitor) -> dict[str, Any]:
    """When the CDP last confirmed the visitor in `segment`, how old that is, and whether it is
    fresh enough for this audience (`maxAgeSeconds`; a membership the request names is fresh)."""
    confirmed = visitor.confirmed.get(segment)
    age = round(visitor.now - confirmed, 1) if confirmed is not None else None
    fresh = (
        True
        if audience.max_age_seconds is None
        else visitor.fresh(segment, audience.max_age_seconds)
    )
    return {
        "segment": segment,
        "confirmedAt": confirmed,
        "ageSeconds": age,
        "maxAgeSeconds": audience.max_age_seconds,
        "fromRequest": segment in visitor.requested,
        "fresh": fresh,
    }


def _missed(part: dict[str, Any]) -> str:
    """Why one audience did not match, from its parts."""
    why = []
    if "segments" in part and not part["segments"]["visitorIn"]:
        why.append(f"in none of {', '.join(part['segments']['anyOf'])}")
    elif part.get("memberships") and not any(m["fresh"] for m in part["memberships"]):
        why.append("stale audience")
    if "personas" in part and not part["personas"]["visitorHas"]:
        why.append(f"no persona {', '.join(part['personas']['anyOf'])}")
    if "condition" in part and not part["condition"]["passed"]:
        why.append(f"condition {summary(part['condition'])}")
    return f"{part['audience']} ({', '.join(why) or 'not matched'})"


def _cap(variant: Variant, env: DecisionEnv, now: datetime) -> Step:
    cap = variant.frequency_cap
    assert cap is not None
    reached, read = cap_reached(variant.key, cap, env, now)
    if not read["counted"]:
        detail = "not counted (no visitor id, no session, or the store is down)"
    else:
        detail = f"{read['count']} of {cap.max} per {cap.per}" + (" (capped)" if reached else "")
    return step("frequency cap", passed(not reached), detail, read)


def _rollout(variant: Variant, visitor: Visitor) -> Step:
    inside, read = rollout_reading(variant, visitor)
    if read["bucket"] is None:
        detail = "no id to hash: held out"
    else:
        sign = "<" if inside else ">="
        where = "inside" if inside else "held out"
        detail = f"bucket {read['bucket']:.4f} {sign} share {read['share']:g}: {where}"
    return step(ROLLOUT, passed(inside), detail, read)
