"""Experiments: GrowthBook bucketing, sticky assignment, rollout splits, conversion attribution.

An arm is identified by its variant key (`control` for the slot's baseline). Its position, arm 0
for the control and arm i for the i-th arm in the slot's `variants` list as the editor arranged
it (`integration.model.Arms`), is what bucketing and `winner` use, exactly as GrowthBook's
`run` does with the same variations, weights, seed, coverage and hash attribute. A visitor's
first arm is stored by key (`a:<key>` in the visitor's decision state) and served from then on:
changing weights, coverage or the order of the list moves nobody already assigned. A stopped
experiment, or one with a `winner`, serves the winner (or the baseline) to everyone who reaches
it. Visitors outside coverage or the namespace get the baseline and are not counted.

A `mode: contextual` experiment with parameters in force (`policy`) buckets the same way for
coverage and namespace, then lets the policy pick the arm of a new visitor from their features
(`assembly.experiments.contextual`); the arm is stored and kept exactly as a bucketed one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from assembly.decisions.outcome import Decision, TestEntry
from assembly.decisions.scoring import timestamp
from assembly.decisions.state import Assignment, DecisionState, Exposure, TestMeta
from assembly.decisions.visitor import Visitor
from assembly.experiments.contextual import Policy
from assembly.targeting.bucketing import choose_variation, gb_hash, in_namespace
from integration.model import CONTROL, Arms, Experiment, Variant

HOLDOUT = "holdout"
CONVERSION_SKEW_SECONDS = 300.0  # client clocks: a conversion may look this much older


def assign(
    arms: Arms,
    visitor: Visitor,
    state: DecisionState,
    slot: str,
    now: float,
    policy: Policy | None = None,
) -> Decision:
    experiment = arms.experiment
    key = experiment.key
    if experiment.status == "stopped" or experiment.winner is not None:
        return _winner(arms)
    sticky = state.assignment(key)
    if sticky is not None:
        return _sticky(arms, sticky, slot)
    value = visitor.hash_value(experiment.hash_attribute)
    if value is None:
        return Decision("baseline", f"experiment {key}: no {experiment.hash_attribute} to bucket")
    ns = experiment.namespace
    if ns is not None and not in_namespace(value, (ns.id, ns.start, ns.end)):
        return Decision("baseline", f"experiment {key}: outside namespace {ns.id}")
    bucket = gb_hash(experiment.seed, value, 2)
    index = -1 if bucket is None else choose_variation(bucket, arms.ranges)
    if index < 0:
        return Decision("baseline", f"experiment {key}: outside coverage")
    how = ""
    if policy is not None:
        chosen = arms.index(policy.choose(policy.encoder.encode(visitor), value))
        if chosen >= 0:
            index, how = chosen, f" (contextual v{policy.version})"
    label = arms.variants[index - 1].key if index else CONTROL
    assignment = Assignment(index, label, experiment.goal_event, now)
    return _arm(arms, index, assignment, slot, new=True, how=how)


def bucketing_reading(arms: Arms, visitor: Visitor, state: DecisionState) -> dict[str, Any]:
    """What `assign` reads, step by step: status and winner, the sticky arm, the hash value,
    the namespace, the bucket against the arms' ranges (coverage applied). For explain; the
    arm served is still `assign`'s."""
    experiment = arms.experiment
    sticky = state.assignment(experiment.key)
    value = visitor.hash_value(experiment.hash_attribute)
    read: dict[str, Any] = {
        "experiment": experiment.key,
        "status": experiment.status,
        "winner": experiment.winner,
        "sticky": {"arm": sticky.arm, "variant": sticky.variant} if sticky else None,
        "hashAttribute": experiment.hash_attribute,
        "hashValue": value,
        "seed": experiment.seed,
        "coverage": experiment.coverage,
        "arms": list(arms.labels),
        "weights": list(arms.weights),
        "ranges": [list(r) for r in arms.ranges],
        "weightsProblem": arms.problem,
        "namespace": None,
        "bucket": None,
        "arm": None,
    }
    if value is None:
        return read
    ns = experiment.namespace
    if ns is not None:
        spot = gb_hash("__" + ns.id, value, 1)
        inside = in_namespace(value, (ns.id, ns.start, ns.end))
        read["namespace"] = {
            "id": ns.id,
            "start": ns.start,
            "end": ns.end,
            "hash": spot,
            "inside": inside,
        }
    bucket = gb_hash(experiment.seed, value, 2)
    read["bucket"] = bucket
    index = -1 if bucket is None else choose_variation(bucket, arms.ranges)
    read["arm"] = arms.labels[index] if index >= 0 else None
    return read


def _sticky(arms: Arms, sticky: Assignment, slot: str) -> Decision:
    index = arms.index(sticky.variant)
    if index < 0:
        key = arms.experiment.key
        return Decision("baseline", f"experiment {key}: assigned arm {sticky.variant} is gone")
    return _arm(arms, index, sticky, slot, new=False)


def _arm(
    arms: Arms, index: int, assignment: Assignment, slot: str, *, new: bool, how: str = ""
) -> Decision:
    experiment = arms.experiment
    label = assignment.variant
    reason = f"experiment {experiment.key} arm {label}" + (how if new else " (sticky)")
    exposure = Exposure(experiment.key, index, label, slot, experiment_meta(arms))
    return Decision(
        "experiment",
        reason,
        arms.variants[index - 1] if index else None,
        {"key": experiment.key, "arm": index, "variant": label},
        (TestEntry(exposure, assignment, new=new, overwrite=False),),
        f"exp:{experiment.key}",
    )


def experiment_meta(arms: Arms) -> TestMeta:
    """Arms by key in list order, and the shares bucketing uses (equal when the weights are not)."""
    return _meta(arms.experiment, arms.labels, arms.weights)


@lru_cache(maxsize=1024)
def _meta(experiment: Experiment, labels: tuple[str, ...], weights: tuple[float, ...]) -> TestMeta:
    shares = tuple(round(w, 10) for w in weights)
    return TestMeta("experiment", labels, shares, experiment.goal_event)


def _winner(arms: Arms) -> Decision:
    experiment = arms.experiment
    key, winner = experiment.key, experiment.winner
    state = "stopped" if experiment.status == "stopped" else "decided"
    if winner is not None and 1 <= winner <= len(arms.variants):
        variant = arms.variants[winner - 1]
        return Decision(
            "variant", f"experiment {key} {state}: winner {variant.key} (arm {winner})", variant
        )
    if winner == 0:
        return Decision("baseline", f"experiment {key} {state}: winner {CONTROL} (arm 0)")
    if winner is not None:
        return Decision("baseline", f"experiment {key} {state}: winner {winner} is no arm")
    return Decision("baseline", f"experiment {key} is {experiment.status}")


# ---------------------------------------------------------------- rollouts


def rollout_test(variant: Variant) -> str:
    return f"rollout:{variant.key}"


def in_rollout(variant: Variant, visitor: Visitor) -> bool:
    """Stable per visitor: the same hash keeps everyone already in when the share grows."""
    value = visitor.hash_value("id")
    if value is None or variant.rollout is None:
        return False
    bucket = gb_hash(f"rollout:{variant.key}", value, 2)
    return bucket is not None and bucket < variant.rollout


def rollout_reading(variant: Variant, visitor: Visitor) -> tuple[bool, dict[str, Any]]:
    """`in_rollout`, with the hash it read and the bucket against the share (explain)."""
    value = visitor.hash_value("id")
    seed = rollout_test(variant)
    bucket = gb_hash(seed, value, 2) if value is not None else None
    share = variant.rollout
    inside = bucket is not None and share is not None and bucket < share
    return inside, {"seed": seed, "hashValue": value, "bucket": bucket, "share": share}


def measured_rollout(variant: Variant) -> bool:
    """A rollout has a comparison group (and a guardrail) only while its share is in (0, 1)."""
    return variant.rollout is not None and 0 < variant.rollout < 1


def rollout_entry(
    variant: Variant, inside: bool, state: DecisionState, slot: str, goal: str, now: float
) -> TestEntry:
    """The rollout split as a test: arm 1 saw the variant, arm 0 was held out."""
    test = rollout_test(variant)
    arm = 1 if inside else 0
    label = variant.key if inside else HOLDOUT
    share = variant.rollout or 0.0
    meta = TestMeta("rollout", (HOLDOUT, variant.key), (1 - share, share), goal)
    previous = state.assignment(test)
    if previous is not None and previous.arm == arm:
        assignment, moved = previous, False
    else:
        assignment, moved = Assignment(arm, label, goal, now), True
    return TestEntry(Exposure(test, arm, label, slot, meta), assignment, new=moved, overwrite=True)


# ---------------------------------------------------------------- conversions


@dataclass(frozen=True, slots=True)
class ConversionUpdate:
    """A visitor converted in a test: count one conversion for that arm (once per visitor)."""

    test: str
    arm: int
    variant: str


def conversion_updates(
    event: Mapping[str, Any], assignments: Mapping[str, Assignment]
) -> list[ConversionUpdate]:
    """The tests whose goal this track event is, for a visitor with these assignments.

    Only an assignment made before the event counts (with `CONVERSION_SKEW_SECONDS` of slack for
    client clocks); an event without a readable timestamp counts.
    """
    if event.get("type") != "track":
        return []
    name = event.get("event")
    if not isinstance(name, str) or not name:
        return []
    at = timestamp(event.get("timestamp") or event.get("sentAt"))
    updates = []
    for test, assignment in assignments.items():
        if assignment.goal != name:
            continue
        if at is not None and assignment.at and at + CONVERSION_SKEW_SECONDS < assignment.at:
            continue
        updates.append(ConversionUpdate(test, assignment.arm, assignment.variant))
    return updates
