"""Experiment assignment with GrowthBook's hash v2 and bucket ranges.

Arm 0 is the control, served as the slot's baseline; arm i is the i-th variant of the
experiment in the slot. A stopped experiment serves its winner (or the baseline); visitors
outside coverage or the namespace get the baseline and are not counted.
"""

from __future__ import annotations

from assembly.bucketing import choose_variation, gb_hash, get_bucket_ranges, in_namespace
from assembly.decision import Decision
from assembly.visitor import Visitor
from integration.model import Experiment, Variant


def assign(experiment: Experiment, arms: tuple[Variant, ...], visitor: Visitor) -> Decision:
    key = experiment.key
    if experiment.status != "running":
        return _winner(experiment, arms)
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
    info = {"key": key, "arm": index, "variant": arms[index - 1].key if index else "control"}
    if index == 0:
        return Decision("experiment", f"experiment {key} arm 0 (control)", None, info)
    return Decision("experiment", f"experiment {key} arm {index}", arms[index - 1], info)


def _weights(experiment: Experiment, arms: tuple[Variant, ...]) -> list[float] | None:
    weights = [experiment.control_weight, *(a.weight for a in arms)]
    if any(w is None for w in weights):
        return None
    total = sum(w for w in weights if w is not None)
    return [w / total for w in weights if w is not None] if total > 0 else None


def _winner(experiment: Experiment, arms: tuple[Variant, ...]) -> Decision:
    key = experiment.key
    winner = experiment.winner
    if experiment.status == "stopped" and winner is not None and 1 <= winner <= len(arms):
        return Decision(
            "variant", f"experiment {key} stopped: winner arm {winner}", arms[winner - 1]
        )
    return Decision("baseline", f"experiment {key} is {experiment.status}")
