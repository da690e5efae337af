"""A logged decision's learning parts, rebuilt for its replay.

A page view decides with the ranking model and the bandit weights in force at that moment; both
move afterwards (a new model version, a scheduled bandit update). The record keeps the model's
version and the weights (`record.py`, `learning`), and replay decides with them: the model of
that version (this replica's, or the artifact the store still keeps), the weights as recorded,
and a contextual policy only when this replica still has the recorded parameter version (its
parameters are not in the record). What cannot be rebuilt is said in `notes`; the replay then
runs without it, as the page view would have.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from assembly.experiments.allocation import EMPTY_ALLOCATIONS, Allocation, Allocations
from assembly.experiments.contextual import Policy
from assembly.learning.artifact import decode
from assembly.learning.compiled import CompiledModel
from assembly.learning.exceptions import ModelInvalid
from assembly.learning.holder import ModelHolder

NOT_RECORDED = (
    "the record holds no model version or bandit weights (logged before they were recorded): "
    "replayed without a model, with the editors' weights"
)


@dataclass(frozen=True, slots=True)
class Learned:
    """The engine's model and allocation source for one replay, and what could not be had."""

    model: CompiledModel | None
    allocations: Allocations
    notes: tuple[str, ...] = ()

    def to_json(self, recorded: Mapping[str, Any] | None) -> dict[str, Any]:
        return {
            "model": {
                "recorded": recorded.get("model") if recorded else None,
                "replayedWith": self.model.version if self.model is not None else None,
            },
            "bandits": {
                key: {"version": a.version, "weights": a.by_label()}
                for key, a in self.allocations.by_key.items()
            },
            "notes": list(self.notes),
        }


async def rebuild(
    recorded: Mapping[str, Any] | None, models: ModelHolder | None, live: Allocations
) -> Learned:
    """The recorded model and weights (`recorded`: the record's `learning`)."""
    if recorded is None:
        return Learned(None, EMPTY_ALLOCATIONS, (NOT_RECORDED,))
    notes: list[str] = []
    model = await _model(recorded.get("model"), models, notes)
    allocations = _allocations(recorded.get("bandits") or {}, live, notes)
    return Learned(model, allocations, tuple(notes))


async def _model(
    version: int | None, models: ModelHolder | None, notes: list[str]
) -> CompiledModel | None:
    if version is None:
        return None
    if models is not None:
        current = models.model
        if current is not None and current.version == version:
            return current
        raw = await models.store.artifact(version)
        if raw is not None:
            try:
                return CompiledModel(decode(raw))
            except ModelInvalid as exc:
                notes.append(
                    f"ranking model version {version} is broken ({exc.detail}): "
                    "replayed without a model"
                )
                return None
    notes.append(f"ranking model version {version} is no longer kept: replayed without a model")
    return None


def _allocations(
    bandits: Mapping[str, Mapping[str, Any]], live: Allocations, notes: list[str]
) -> Allocations:
    by_key: dict[str, Allocation] = {}
    policies: dict[str, Policy] = {}
    for key, entry in bandits.items():
        by_key[key] = Allocation(
            int(entry["version"]),
            0.0,
            tuple(str(label) for label in entry["arms"]),
            tuple(float(w) for w in entry["weights"]),
        )
        wanted = entry.get("policy")
        if wanted is None:
            continue
        policy = live.policies.get(key)
        if policy is not None and policy.version == wanted:
            policies[key] = policy
        else:
            notes.append(
                f"experiment {key}: contextual parameters version {wanted} are no longer in "
                "force here: replayed with its bandit weights"
            )
    return Allocations(by_key, policies=policies)
