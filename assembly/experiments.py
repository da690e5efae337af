"""Experiments: GrowthBook bucketing, sticky assignment, rollout splits, conversion attribution.

Arm 0 is the control, served as the slot's baseline; arm i is the i-th variant of the experiment
in the slot. A visitor's first arm is stored (`a:<key>` in the visitor's decision state) and
served from then on: changing weights or coverage moves nobody already assigned. A stopped
experiment, or one with a `winner`, serves the winner (or the baseline) to everyone who reaches
it. Visitors outside coverage or the namespace get the baseline and are not counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from assembly.bucketing import choose_variation, gb_hash, get_bucket_ranges, in_namespace
from assembly.decision import Decision, TestEntry
from assembly.scoring import timestamp
from assembly.state import Assignment, DecisionState, Exposure, TestMeta
from assembly.visitor import Visitor
from integration.model import Experiment, Variant

CONTROL = "control"
HOLDOUT = "holdout"
CONVERSION_SKEW_SECONDS = 300.0  # client clocks: a conversion may look this much older


def assign(
    experiment: Experiment,
    arms: tuple[Variant, ...],
    visitor: Visitor,
    state: DecisionState,
    slot: str,
    now: float,
) -> Decision:
    key = experiment.key
    if experiment.status == "stopped" or experiment.winner is not None:
        return _winner(experiment, arms)
    sticky = state.assignment(key)
    if sticky is not None:
        return _sticky(experiment, arms, sticky, slot)
    value = visitor.hash_value(experiment.hash_attribute)
    if value is None:
        return Decision("baseline", f"experiment {key}: no {experiment.hash_attribute} to bucket")
    ns = experiment.namespace
    if ns is not None and not in_namespace(value, (ns.id, ns.start, ns.end)):
        return Decision("baseline", f"experiment {key}: outside namespace {ns.id}")
    bucket = gb_hash(experiment.seed, value, 2)
    ranges = get_bucket_ranges(len(arms) + 1, experiment.coverage, _weights(experiment, arms))
    index = -1 if bucket is None else choose_variation(bucket, ranges)
    if index < 0:
        return Decision("baseline", f"experiment {key}: outside coverage")
    variant = arms[index - 1].key if index else CONTROL
    assignment = Assignment(index, variant, experiment.goal_event, now)
    return _arm(experiment, arms, assignment, slot, new=True)


def _sticky(
    experiment: Experiment, arms: tuple[Variant, ...], sticky: Assignment, slot: str
) -> Decision:
    key = experiment.key
    if sticky.variant == CONTROL:
        index = 0
    else:
        index = next((i for i, a in enumerate(arms, 1) if a.key == sticky.variant), -1)
    if index < 0:
        return Decision("baseline", f"experiment {key}: assigned arm {sticky.variant} is gone")
    if index != sticky.arm:
        sticky = Assignment(index, sticky.variant, sticky.goal, sticky.at)
    return _arm(experiment, arms, sticky, slot, new=False)


def _arm(
    experiment: Experiment,
    arms: tuple[Variant, ...],
    assignment: Assignment,
    slot: str,
    *,
    new: bool,
) -> Decision:
    index = assignment.arm
    label = CONTROL if index == 0 else arms[index - 1].key
    notes = [CONTROL] if index == 0 else []
    if not new:
        notes.append("sticky")
    reason = f"experiment {experiment.key} arm {index}"
    if notes:
        reason = f"{reason} ({', '.join(notes)})"
    exposure = Exposure(experiment.key, index, label, slot, experiment_meta(experiment, arms))
    return Decision(
        "experiment",
        reason,
        arms[index - 1] if index else None,
        {"key": experiment.key, "arm": index, "variant": label},
        (TestEntry(exposure, assignment, new=new, overwrite=False),),
        f"exp:{experiment.key}",
    )


def _weights(experiment: Experiment, arms: tuple[Variant, ...]) -> list[float] | None:
    weights = [experiment.control_weight, *(a.weight for a in arms)]
    if any(w is None for w in weights):
        return None
    total = sum(w for w in weights if w is not None)
    return [w / total for w in weights if w is not None] if total > 0 else None


def experiment_meta(experiment: Experiment, arms: tuple[Variant, ...]) -> TestMeta:
    """Arms and the shares the split intends (GrowthBook's equal-weight fallback included)."""
    return _meta(experiment, tuple(a.key for a in arms), tuple(a.weight for a in arms))


@lru_cache(maxsize=1024)
def _meta(
    experiment: Experiment, keys: tuple[str, ...], weights: tuple[float | None, ...]
) -> TestMeta:
    given = [experiment.control_weight, *weights]
    valid = None
    if all(w is not None for w in given):
        total = sum(w for w in given if w is not None)
        valid = [w / total for w in given if w is not None] if total > 0 else None
    ranges = get_bucket_ranges(len(keys) + 1, 1.0, valid)
    shares = tuple(round(end - start, 10) for start, end in ranges)
    return TestMeta("experiment", (CONTROL, *keys), shares, experiment.goal_event)


def _winner(experiment: Experiment, arms: tuple[Variant, ...]) -> Decision:
    key = experiment.key
    winner = experiment.winner
    state = "stopped" if experiment.status == "stopped" else "decided"
    if winner is not None and 1 <= winner <= len(arms):
        return Decision(
            "variant", f"experiment {key} {state}: winner arm {winner}", arms[winner - 1]
        )
    if winner == 0:
        return Decision("baseline", f"experiment {key} {state}: winner arm 0 ({CONTROL})")
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
