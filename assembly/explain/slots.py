"""One slot, explained in the engine's order (`assembly.decisions.rules.decide`): kill switches,
consent, eligible variants, conflicts, experiment, baseline, then session coherence.

The walk calls the engine's own pieces for every verdict (`check`, `in_rollout`, `resolve`,
`assign`, `coherent`), so the decision it ends with is the one assemble makes; the candidates'
rules (`assembly.explain.candidates`) say what each test read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from assembly.decisions.outcome import Decision
from assembly.decisions.rules import (
    DecisionEnv,
    Match,
    check,
    coherent,
    model_ranking,
    resolve,
)
from assembly.decisions.visitor import Visitor
from assembly.experiments.assignment import assign, bucketing_reading, in_rollout
from assembly.explain.candidates import explain_candidate, rules_pass
from assembly.explain.steps import Step, step
from assembly.learning.compiled import Ranked
from integration.model import Slot, Variant

log = structlog.get_logger()


@dataclass(slots=True)
class SlotTrace:
    slot: Slot
    candidates: dict[str, dict[str, Any]]
    steps: list[Step] = field(default_factory=list)
    decision: Decision = field(default_factory=lambda: Decision("baseline", ""))
    decided_by: str = "baseline"

    def to_json(self) -> dict[str, Any]:
        decision = self.decision
        return {
            "slot": self.slot.key,
            "source": decision.source,
            "variant": decision.variant.key if decision.variant else None,
            "reason": decision.reason,
            "experiment": decision.experiment,
            "decidedBy": self.decided_by,
            "steps": self.steps,
            "candidates": list(self.candidates.values()),
        }


def explain_slot(
    slot: Slot, visitor: Visitor, now: datetime, switch: str | None, env: DecisionEnv
) -> SlotTrace:
    candidates = {v.key: explain_candidate(v, visitor, now, env) for v in slot.variants}
    _model_scores(slot, candidates, env)
    trace = SlotTrace(slot, candidates)
    killed = _kill_switch(slot, switch, env)
    if killed is not None:
        trace.steps.append(step("kill switches", "decided", killed))
        return _decided(trace, Decision("baseline", killed), "kill switch")
    trace.steps.append(step("kill switches", "pass", "none in force for the page or the slot"))
    consent = {"consent": visitor.consent}
    if not visitor.consent:
        trace.steps.append(step("consent", "decided", "no consent for personalization", consent))
        return _decided(trace, Decision("baseline", "no consent for personalization"), "consent")
    trace.steps.append(step("consent", "pass", "consent for personalization", consent))
    _choose(trace, visitor, now, env)
    _coherence(trace, visitor, now, env)
    return trace


def _decided(trace: SlotTrace, decision: Decision, by: str) -> SlotTrace:
    trace.decision, trace.decided_by = decision, by
    for candidate in trace.candidates.values():
        candidate["considered"] = False
    return trace


def _kill_switch(slot: Slot, switch: str | None, env: DecisionEnv) -> str | None:
    """The reason `decide` gives for a switched-off page or slot, else None."""
    if switch is not None:
        return f"kill switch: {switch}"
    if slot.kill_switch:
        return f"kill switch: slot {slot.key}"
    if slot.key in env.board.slots:
        return f"kill switch: slot {slot.key} (admin)"
    return None


def _choose(trace: SlotTrace, visitor: Visitor, now: datetime, env: DecisionEnv) -> None:
    """`rules._choose`: the eligible variants of the highest priority, the winner among them."""
    notes: list[str] = []
    tied: list[tuple[Variant, Match]] = []
    top: int | None = None
    for variant in trace.slot.variants:
        candidate = trace.candidates[variant.key]
        if top is not None and variant.priority < top:
            candidate["considered"] = False
            continue
        match = check(variant, visitor, now, env, notes)
        _agree(candidate, match is not None)
        inside = variant.rollout is None or in_rollout(variant, visitor)
        candidate["eligible"] = match is not None and inside
        if candidate["eligible"] and match is not None:
            tied.append((variant, match))
            top = variant.priority
    eligible = [v.key for v, _ in tied]
    detail = f"priority {top}: {', '.join(eligible)}" if eligible else "none"
    trace.steps.append(step("eligible variants", "pass", detail, {"notes": notes}))
    if not tied:
        why = notes[0] if notes else "no variant matched"
        trace.decision, trace.decided_by = Decision("baseline", why), "baseline"
        trace.steps.append(step("baseline", "decided", why))
        return
    variant, why = resolve(tied, visitor, env, trace.slot)
    trace.steps.append(_conflict(tied, variant, visitor, env, trace.slot))
    if variant.experiment is not None:
        _experiment(trace, variant, visitor, now, env)
        return
    if variant.rollout is not None:
        why = f"{why} (rollout {variant.rollout:.0%})"
    trace.decision = Decision("variant", why, variant, marker=variant.key)
    trace.decided_by = "conflict resolution" if len(tied) > 1 else "eligible variant"


def _agree(candidate: dict[str, Any], engine: bool) -> None:
    """The rules shown must give the engine's verdict; a difference is a bug in explain."""
    if rules_pass(candidate, rollout=False) != engine:
        log.warning("assembly.explain.drift", variant=candidate["variant"], engine=engine)


def _model_scores(slot: Slot, candidates: dict[str, dict[str, Any]], env: DecisionEnv) -> None:
    """Every candidate's model score (None: no model for the slot, or the variant unseen),
    the model version and the threshold that would let the model pick it (`modelThreshold`:
    the variant's own, else the slot's)."""
    model = env.model
    known = model is not None and model.has_slot(slot.key)
    for variant in slot.variants:  # the candidates are the slot's variants
        candidates[variant.key]["model"] = {
            "version": model.model.version if model is not None else None,
            "score": model.score(slot.key, variant.key) if model is not None and known else None,
            "threshold": slot.choice_threshold(variant),
        }


def _conflict(
    tied: list[tuple[Variant, Match]],
    winner: Variant,
    visitor: Visitor,
    env: DecisionEnv,
    slot: Slot,
) -> Step:
    if len(tied) == 1:
        return step("conflicts", "pass", f"{winner.key} is the only eligible variant")
    ranked = model_ranking(tied, env, slot)
    scores = {
        v.key: env.scorer.explain(v, visitor, env.now_ts, ranked.probs[i] if ranked else None)
        for i, (v, _) in enumerate(tied)
    }
    detail = f"{winner.key} wins among {len(tied)} at priority {winner.priority}"
    return step(
        "conflicts", "decided", detail, {"scores": scores, "model": _choice(tied, ranked, slot)}
    )


def _choice(tied: list[tuple[Variant, Match]], ranked: Ranked | None, slot: Slot) -> dict[str, Any]:
    """What `rules.model_choice` read: the threshold (the top variant's, else the slot's), the
    model's top variant, its runner-up, the confidence, and whether the model chose."""
    if ranked is None or ranked.best < 0:
        return {
            "threshold": slot.model_threshold,
            "top": None,
            "runnerUp": None,
            "confidence": None,
            "chose": False,
        }
    threshold = slot.choice_threshold(tied[ranked.best][0])
    return {
        "threshold": threshold,
        "top": tied[ranked.best][0].key,
        "runnerUp": tied[ranked.runner][0].key,
        "confidence": ranked.sure,
        "chose": threshold is not None and ranked.sure >= threshold,
    }


def _experiment(
    trace: SlotTrace, variant: Variant, visitor: Visitor, now: datetime, env: DecisionEnv
) -> None:
    """`rules._experiment`: bucketing decides; an assigned arm must itself be eligible."""
    experiment = variant.experiment
    assert experiment is not None
    arms = env.allocations.arms(trace.slot.arms[experiment.key])
    reading = bucketing_reading(arms, visitor, env.state)
    policy = env.allocations.policy(arms)
    if policy is not None:  # the arm is the policy's choice, not the bucket's (new visitors)
        reading["contextual"] = policy.reading(policy.encoder.encode(visitor))
    decision = assign(arms, visitor, env.state, trace.slot.key, env.now_ts, policy)
    served = decision.variant
    if served is not None and served is not variant:
        notes: list[str] = []
        if check(served, visitor, now, env, notes) is None:
            why = notes[0] if notes else f"{served.key} is not eligible"
            decision = Decision("baseline", f"{decision.reason}: {why}")
    trace.steps.append(step("experiment", "decided", decision.reason, reading))
    trace.decision, trace.decided_by = decision, "experiment"


def _coherence(trace: SlotTrace, visitor: Visitor, now: datetime, env: DecisionEnv) -> None:
    """`decide`'s last step: what the slot showed earlier in the session stays if eligible."""
    if not env.coherence:
        trace.steps.append(step("session coherence", "skip", "off, or no session id"))
        return
    marker = env.state.session_marker(trace.slot.key)
    read = {"shown": marker, "now": trace.decision.marker}
    if marker is None or marker == trace.decision.marker:
        detail = "nothing shown earlier" if marker is None else "the rules pick it again"
        trace.steps.append(step("session coherence", "pass", detail, read))
        return
    kept = coherent(trace.slot, marker, visitor, now, env)
    if kept is None:
        detail = f"{marker} shown earlier is no longer eligible"
        trace.steps.append(step("session coherence", "pass", detail, read))
        return
    trace.steps.append(step("session coherence", "decided", f"keeps {marker}", read))
    trace.decision, trace.decided_by = kept, "session coherence"
