"""The compiled content model (DESIGN.md §4): immutable, typed, ready for decisions.

Contentful type ids and field ids are a public contract; they are named once here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from assembly.targeting.bucketing import get_bucket_ranges, get_equal_weights, weights_valid
from assembly.targeting.compiler import CompiledCondition

AUDIENCE = "mbAudience"
EXPERIMENT = "mbExperiment"
VARIANT = "mbVariant"
SLOT = "mbSlot"
TEMPLATE = "mbTemplate"
SETTINGS = "mbSettings"

Condition = CompiledCondition
CapPeriod = Literal["session", "day", "week", "lifetime"]
ExperimentMode = Literal["ab", "bandit", "contextual"]


@dataclass(frozen=True, slots=True)
class Audience:
    id: str
    key: str
    segments: frozenset[str] = frozenset()
    personas: frozenset[str] = frozenset()
    condition: Condition | None = None
    max_age_seconds: int | None = None
    """`maxAgeSeconds`: a CDP membership last confirmed longer ago counts as unknown (stale)."""


@dataclass(frozen=True, slots=True)
class Namespace:
    id: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Experiment:
    id: str
    key: str
    status: Literal["draft", "running", "stopped"] = "draft"
    coverage: float = 1.0
    seed: str = ""
    hash_attribute: str = "id"
    namespace: Namespace | None = None
    goal_event: str | None = None
    control_weight: float | None = None
    winner: int | None = None
    mode: ExperimentMode = "ab"
    """`ab`: the editor's weights; `bandit`: weights moved by Thompson sampling (learning.md)."""
    mode_problem: str | None = None
    """Why the editor's `mode` was not understood (then `ab`): reported as a library issue."""


@dataclass(frozen=True, slots=True)
class FrequencyCap:
    max: int
    per: CapPeriod


@dataclass(frozen=True, slots=True)
class Variant:
    id: str
    key: str
    entry_id: str
    audiences: tuple[Audience, ...] = ()
    condition: Condition | None = None
    priority: int = 0
    weight: float | None = None
    experiment: Experiment | None = None
    rollout: float | None = None
    start_at: datetime | None = None
    end_at: datetime | None = None
    frequency_cap: FrequencyCap | None = None
    style: Mapping[str, Any] = field(default_factory=dict)
    enabled: bool = True
    updated_at: str = ""
    model_threshold: float | None = None
    """`modelThreshold`: the ranking model may pick this variant when it ranks it first with at
    least this confidence (0..1); None: the slot's threshold applies (`choice_threshold`)."""


CONTROL = "control"  # the label of arm 0, the slot's baseline


@dataclass(frozen=True, slots=True)
class Arms:
    """One experiment's arms in one slot; an arm is identified by its variant key.

    Arm 0 is the control (the slot's baseline); arm i is `variants[i - 1]`, in the order of the
    slot's `variants` list as the editor arranged it (not the rule order). `weights` (control
    first) and `ranges` are what bucketing uses: the given weights when GrowthBook would use
    them, else an equal split, and then `problem` says why.
    """

    experiment: Experiment
    variants: tuple[Variant, ...]
    weights: tuple[float, ...]
    ranges: tuple[tuple[float, float], ...]
    problem: str | None = None

    @property
    def labels(self) -> tuple[str, ...]:
        return (CONTROL, *(v.key for v in self.variants))

    def index(self, label: str) -> int:
        """The arm's position (0: control), or -1 when the slot no longer has it."""
        if label == CONTROL:
            return 0
        for i, variant in enumerate(self.variants, 1):
            if variant.key == label:
                return i
        return -1


def build_arms(experiment: Experiment, variants: tuple[Variant, ...]) -> Arms:
    """The arms under GrowthBook's rule: weights summing to 0.99 to 1.01, else an equal split."""
    given = (experiment.control_weight, *(v.weight for v in variants))
    problem = _weights_problem(experiment, variants, given)
    count = len(given)
    weights: tuple[float, ...]
    if problem is None and all(w is not None for w in given):
        weights = tuple(w for w in given if w is not None)
    else:
        weights = tuple(get_equal_weights(count))
    ranges = tuple(get_bucket_ranges(count, experiment.coverage, weights))
    return Arms(experiment, variants, weights, ranges, problem)


def _weights_problem(
    experiment: Experiment, variants: tuple[Variant, ...], given: tuple[float | None, ...]
) -> str | None:
    if all(w is None for w in given):
        return None  # no weights at all: the equal split is what the editor asked for
    names = ("controlWeight", *(v.key for v in variants))
    missing = [name for name, w in zip(names, given, strict=True) if w is None]
    equal = f"an equal split (1/{len(given)} each) is used"
    if missing:
        return f"experiment {experiment.key}: no weight for {', '.join(missing)}; {equal}"
    weights = [w for w in given if w is not None]
    if weights_valid(len(weights), weights):
        return None
    shown = " + ".join(f"{n} {w:g}" for n, w in zip(names, weights, strict=True))
    total = sum(weights)
    return (
        f"experiment {experiment.key}: weights sum to {total:.4g} ({shown}), "
        f"not 1 (0.99 to 1.01); {equal}"
    )


def group_arms(listed: Sequence[Variant]) -> dict[str, Arms]:
    """Each experiment's arms among a slot's variants, in the list's order (first listing wins)."""
    grouped: dict[str, list[Variant]] = {}
    experiments: dict[str, Experiment] = {}
    for variant in listed:
        experiment = variant.experiment
        if experiment is None:
            continue
        arms = grouped.setdefault(experiment.key, [])
        experiments.setdefault(experiment.key, experiment)
        if all(a.key != variant.key for a in arms):
            arms.append(variant)
    return {key: build_arms(experiments[key], tuple(arms)) for key, arms in grouped.items()}


@dataclass(frozen=True, slots=True)
class Slot:
    """A slot. `variants` are in rule order (priority, then most recent); `arms` keep the
    editor's order per experiment key (derived from `variants` when not given)."""

    id: str
    key: str
    baseline_id: str
    variants: tuple[Variant, ...] = ()
    category: str | None = None
    pinned: bool = False
    kill_switch: bool = False
    arms: Mapping[str, Arms] = field(default_factory=dict)
    listed: tuple[str, ...] = ()  # variant keys in the editor's order (introspection)
    model_threshold: float | None = None
    """`modelThreshold`: the ranking model picks among the eligible variants when its confidence
    reaches this (0..1); None: the rules decide (docs/learning.md, "Model scoring")."""

    def choice_threshold(self, variant: Variant) -> float | None:
        """The confidence the model needs to pick `variant` (ranked first): the variant's own
        `modelThreshold`, else the slot's; None: the rules decide."""
        own = variant.model_threshold
        return own if own is not None else self.model_threshold

    def __post_init__(self) -> None:
        if not self.arms and any(v.experiment is not None for v in self.variants):
            object.__setattr__(self, "arms", group_arms(self.variants))


@dataclass(frozen=True, slots=True)
class Template:
    id: str
    key: str
    slots: tuple[Slot, ...]
    sequencing: Literal["fixed", "engagement"] = "fixed"
    max_personalized: int | None = None
    kill_switch: bool = False


@dataclass(frozen=True, slots=True)
class LibraryIssue:
    """An entry the compiler skipped or repaired, reported in logs and `/readyz`."""

    entity_id: str
    content_type: str | None
    problem: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.entity_id, "contentType": self.content_type, "problem": self.problem}
