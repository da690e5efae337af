"""Per-slot decisions in DESIGN.md §5 order; every decision carries the reason it was made.

1. kill switches: global and template (content or admin, decided by the caller), slot;
2. no consent → baseline;
3. session coherence: the variant (or experiment) the slot showed in this session, while eligible
   (checked only when the rules below would pick something else: then it is the reason);
4. eligible variants: enabled and not switched off, inside schedule, audience and conditions
   true, under the frequency cap, inside the rollout share;
5. among the eligible of the highest priority: the ranking model's top variant when it or the
   slot asks for model choice (`modelThreshold`) and the model is confident enough (`model_choice`),
   else the best score (`assembly.decisions.scoring`, the model score one of its terms), then
   the most recently published;
6. an experiment arm that wins leads to the experiment's bucketing (sticky);
7. otherwise the baseline, with the reason a candidate was passed over when there is one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from assembly.decisions.outcome import Decision, TestEntry
from assembly.decisions.scoring import Scorer
from assembly.decisions.state import EMPTY_STATE, DecisionState, Periods, count_field
from assembly.decisions.visitor import Visitor
from assembly.experiments.allocation import EMPTY_ALLOCATIONS, Allocations
from assembly.experiments.assignment import assign, in_rollout, measured_rollout, rollout_entry
from assembly.killswitch import EMPTY_BOARD, SwitchBoard
from assembly.learning.compiled import Ranked, VisitorScores
from integration.model import Arms, Audience, FrequencyCap, Slot, Variant

Match = tuple[str, Audience | None]  # why the variant applies, and the audience that matched
Winner = tuple[Variant, str]  # the variant chosen among equals, and the reason


@dataclass(slots=True)
class DecisionEnv:
    """What a slot decision reads besides the slot and the visitor (one per request)."""

    state: DecisionState = EMPTY_STATE
    board: SwitchBoard = EMPTY_BOARD
    scorer: Scorer = dataclasses.field(default_factory=lambda: Scorer(1.0, 1.0, 3600.0))
    coherence: bool = False
    guardrail_goal: str = "Order Completed"
    now_ts: float = 0.0
    periods: Periods | None = None
    allocations: Allocations = EMPTY_ALLOCATIONS
    """Bandit weights in force (`mode: bandit` experiments bucket with them)."""
    model: VisitorScores | None = None
    """The visitor's scores under the published ranking model; None: no model in force."""


_DEFAULT_ENV = DecisionEnv()


def decide(
    slot: Slot, visitor: Visitor, now: datetime, switch: str | None, env: DecisionEnv | None = None
) -> Decision:
    """Kill switches, consent, coherence, then the best eligible variant, else the baseline."""
    if switch is not None:
        return Decision("baseline", f"kill switch: {switch}")
    if slot.kill_switch:
        return Decision("baseline", f"kill switch: slot {slot.key}")
    env = env or _DEFAULT_ENV
    if env.board.slots and slot.key in env.board.slots:
        return Decision("baseline", f"kill switch: slot {slot.key} (admin)")
    if not visitor.consent:
        return Decision("baseline", "no consent for personalization")
    decision = _choose(slot, visitor, now, env)
    if env.coherence:
        # The slot keeps what it showed earlier in the session, while that stays eligible.
        # When the rules pick the same again, they are the reason; only a change is checked.
        marker = env.state.session_marker(slot.key)
        if marker is not None and marker != decision.marker:
            kept = coherent(slot, marker, visitor, now, env)
            if kept is not None:
                return kept
    return decision


def _choose(slot: Slot, visitor: Visitor, now: datetime, env: DecisionEnv) -> Decision:
    notes: list[str] = []
    tied: list[tuple[Variant, Match]] = []
    holdout: Variant | None = None
    top: int | None = None
    for variant in slot.variants:
        if top is not None and variant.priority < top:
            break
        match = check(variant, visitor, now, env, notes)
        if match is None:
            continue
        if variant.rollout is not None and not in_rollout(variant, visitor):
            if top is None and holdout is None and measured_rollout(variant):
                holdout = variant
            continue
        tied.append((variant, match))
        top = variant.priority
    held = (_rollout(holdout, False, slot, env),) if holdout is not None else ()
    if not tied:
        return Decision("baseline", notes[0] if notes else "no variant matched", tests=held)
    variant, why = resolve(tied, visitor, env, slot)
    if variant.experiment is not None:
        return _experiment(slot, variant, visitor, now, env, held)
    tests = held
    if variant.rollout is not None:
        why = f"{why} (rollout {variant.rollout:.0%})"
        if measured_rollout(variant):
            tests = (*held, _rollout(variant, True, slot, env))
    return Decision("variant", why, variant, tests=tests, marker=variant.key)


def _experiment(
    slot: Slot,
    variant: Variant,
    visitor: Visitor,
    now: datetime,
    env: DecisionEnv,
    held: tuple[TestEntry, ...],
) -> Decision:
    experiment = variant.experiment
    assert experiment is not None
    decision = _assign(slot.arms[experiment.key], slot, visitor, env)
    served = decision.variant
    if served is not None and served is not variant:
        notes: list[str] = []
        if check(served, visitor, now, env, notes) is None:
            why = notes[0] if notes else f"{served.key} is not eligible"
            return Decision("baseline", f"{decision.reason}: {why}", tests=held)
    if held:
        decision = dataclasses.replace(decision, tests=(*held, *decision.tests))
    return decision


def _rollout(variant: Variant, inside: bool, slot: Slot, env: DecisionEnv) -> TestEntry:
    return rollout_entry(variant, inside, env.state, slot.key, env.guardrail_goal, env.now_ts)


def resolve(
    tied: list[tuple[Variant, Match]], visitor: Visitor, env: DecisionEnv, slot: Slot | None = None
) -> Winner:
    """Priority is equal among `tied`: the model's confident choice when its top variant or the
    slot asks for it (`Slot.choice_threshold`), else the best score, then the first (most
    recent)."""
    if len(tied) == 1:
        return tied[0][0], tied[0][1][0]
    model = env.model  # `model_ranking`, inlined: once per conflict
    ranked = model.rank(slot.key, tied) if model is not None and slot is not None else None
    scorer, now_ts = env.scorer, env.now_ts
    if ranked is None:
        scores = [scorer.score(v, visitor, now_ts) for v, _ in tied]
    else:
        probs, top, _, sure = ranked
        # `Slot.choice_threshold`, inlined: the top variant's, else the slot's
        threshold = tied[top][0].model_threshold if top >= 0 else None
        if threshold is None and slot is not None:
            threshold = slot.model_threshold
        if threshold is not None and sure >= threshold:
            return model_choice(tied, ranked, threshold)
        scores = [scorer.score(tied[i][0], visitor, now_ts, p) for i, p in enumerate(probs)]
    best = max(range(len(tied)), key=lambda i: (scores[i], -i))
    runner = max((i for i in range(len(tied)) if i != best), key=lambda i: (scores[i], -i))
    variant, (why, _) = tied[best]
    other = tied[runner][0].key
    if scores[best] > scores[runner]:
        how = f"score {scores[best]:.2f} > {scores[runner]:.2f}"
    else:
        how = "most recently published"
    return variant, f"{why} (tie at priority {variant.priority} with {other}: {how})"


def model_ranking(
    tied: list[tuple[Variant, Match]], env: DecisionEnv, slot: Slot | None
) -> Ranked | None:
    """The tied variants under the model (a variant it does not know scores None); None
    when no model is in force or it has no model for the slot."""
    model = env.model
    if model is None or slot is None:
        return None
    return model.rank(slot.key, tied)


def model_choice(tied: list[tuple[Variant, Match]], ranked: Ranked, threshold: float) -> Winner:
    """The model's top variant: its confidence reached the slot's threshold."""
    variant, (why, _) = tied[ranked.best]
    p1, p2 = ranked.probs[ranked.best], ranked.probs[ranked.runner]
    return variant, (
        f"{why} (model {p1:.3f} > {tied[ranked.runner][0].key} {p2:.3f}, "
        f"confidence {ranked.sure:.2f} >= {threshold:g})"
    )


def check(
    variant: Variant,
    visitor: Visitor,
    now: datetime,
    env: DecisionEnv,
    notes: list[str] | None,
) -> Match | None:
    """Why the variant applies (all but the rollout share), or None; `notes` learn why not."""
    killed = bool(env.board.variants) and variant.key in env.board.variants
    if killed or not variant.enabled:
        if notes is not None and qualifies(variant, visitor, now) is not None:
            notes.append(f"kill switch: variant {variant.key}" + (" (admin)" if killed else ""))
        return None
    match = qualifies(variant, visitor, now)
    if match is None:
        if notes is not None:
            _note_stale(variant, visitor, now, notes)
        return None
    cap = variant.frequency_cap
    if cap is not None and capped(variant.key, cap, env, now):
        if notes is not None:
            notes.append(f"frequency cap: {variant.key} ({cap.max} per {cap.per})")
        return None
    return match


def qualifies(variant: Variant, visitor: Visitor, now: datetime) -> Match | None:
    """Schedule, experiment status, audiences any-of, conditions."""
    if (variant.start_at and now < variant.start_at) or (variant.end_at and now >= variant.end_at):
        return None
    if variant.experiment is not None and variant.experiment.status == "draft":
        return None
    why, matched = "everyone", None
    if variant.audiences:
        for audience in variant.audiences:
            if visitor.in_audience(audience):
                matched = audience
                break
        else:
            return None
        why = f"audience {matched.key}"
    if variant.condition is not None:
        if not variant.condition.test(visitor.doc):
            return None
        why = f"{why} + conditions" if variant.audiences else "conditions"
    return why, matched


def _note_stale(variant: Variant, visitor: Visitor, now: datetime, notes: list[str]) -> None:
    """`stale audience <key>`: the variant's audience failed on a membership past its
    `maxAgeSeconds` (a variant out of schedule or in a draft experiment is not noted)."""
    stale = visitor.stale_among(variant.audiences)
    if stale is None or (variant.experiment and variant.experiment.status == "draft"):
        return
    if (variant.start_at and now < variant.start_at) or (variant.end_at and now >= variant.end_at):
        return
    notes.append(f"stale audience {stale}")


def capped(key: str, cap: FrequencyCap, env: DecisionEnv, now: datetime) -> bool:
    state = env.state
    if state.key is None:
        return False  # a visitor we cannot count (no id, or the store is down)
    if env.periods is None:
        env.periods = Periods.at(now)
    name = count_field(key, cap.per, env.periods, state.session)
    return name is not None and state.count(name) >= cap.max


def coherent(
    slot: Slot, marker: str, visitor: Visitor, now: datetime, env: DecisionEnv
) -> Decision | None:
    if marker.startswith("exp:"):
        return _coherent_experiment(slot, marker[4:], visitor, now, env)
    for variant in slot.variants:
        if variant.key == marker:
            break
    else:
        return None
    if variant.experiment is not None:
        return None
    match = check(variant, visitor, now, env, None)
    if match is None or (variant.rollout is not None and not in_rollout(variant, visitor)):
        return None
    tests = (_rollout(variant, True, slot, env),) if measured_rollout(variant) else ()
    return Decision(
        "variant", f"session coherence: {match[0]}", variant, tests=tests, marker=variant.key
    )


def _assign(arms: Arms, slot: Slot, visitor: Visitor, env: DecisionEnv) -> Decision:
    """The experiment's arm for the visitor, under the weights (and policy) in force."""
    current = env.allocations.arms(arms)
    return assign(
        current, visitor, env.state, slot.key, env.now_ts, env.allocations.policy(current)
    )


def _coherent_experiment(
    slot: Slot, key: str, visitor: Visitor, now: datetime, env: DecisionEnv
) -> Decision | None:
    arms = slot.arms.get(key)
    if arms is None or not any(check(a, visitor, now, env, None) for a in arms.variants):
        return None
    decision = _assign(arms, slot, visitor, env)
    if decision.source != "experiment":
        return None
    if decision.variant is not None and check(decision.variant, visitor, now, env, None) is None:
        return None
    return dataclasses.replace(decision, reason=f"session coherence: {decision.reason}")


# ---------------------------------------------------------------- explainable twins
# The tests of `check` and `qualifies`, one rule at a time, each with what it read, for
# `assembly.explain`. The engine keeps calling the inlined versions above (the hot path);
# tests/assembly/test_explain.py checks on many visitors that both give the same verdicts.


def switched_off(variant: Variant, env: DecisionEnv) -> tuple[bool, dict[str, Any]]:
    """`enabled: false` in Contentful, or an admin switch on the variant."""
    admin = env.board.variants.get(variant.key)
    read = {"enabled": variant.enabled, "adminSwitch": admin.to_json() if admin else None}
    return admin is not None or not variant.enabled, read


def in_schedule(variant: Variant, now: datetime) -> tuple[bool, dict[str, Any]]:
    """`startAt <= now < endAt`, either bound optional."""
    early = variant.start_at is not None and now < variant.start_at
    late = variant.end_at is not None and now >= variant.end_at
    read = {
        "startAt": variant.start_at.isoformat() if variant.start_at else None,
        "endAt": variant.end_at.isoformat() if variant.end_at else None,
        "now": now.isoformat(),
    }
    return not (early or late), read


def cap_reached(
    key: str, cap: FrequencyCap, env: DecisionEnv, now: datetime
) -> tuple[bool, dict[str, Any]]:
    """`capped`, with the counter it read: its field, the count and the cap."""
    state = env.state
    read: dict[str, Any] = {"max": cap.max, "per": cap.per, "field": None, "count": None}
    if state.key is None:
        return False, {**read, "counted": False}
    name = count_field(key, cap.per, env.periods or Periods.at(now), state.session)
    count = state.count(name) if name is not None else None
    read.update(field=name, count=count, counted=name is not None)
    return count is not None and count >= cap.max, read
