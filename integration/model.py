"""The compiled content model (DESIGN.md §4): immutable, typed, ready for decisions.

Contentful type ids and field ids are a public contract; they are named once here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

AUDIENCE = "mbAudience"
EXPERIMENT = "mbExperiment"
VARIANT = "mbVariant"
SLOT = "mbSlot"
TEMPLATE = "mbTemplate"
SETTINGS = "mbSettings"
MODEL_TYPES = frozenset({AUDIENCE, EXPERIMENT, VARIANT, SLOT, TEMPLATE, SETTINGS})

Condition = Callable[[Mapping[str, Any]], bool]
CapPeriod = Literal["session", "day", "week", "lifetime"]


@dataclass(frozen=True, slots=True)
class Audience:
    id: str
    key: str
    segments: frozenset[str] = frozenset()
    personas: frozenset[str] = frozenset()
    condition: Condition | None = None


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


@dataclass(frozen=True, slots=True)
class Slot:
    id: str
    key: str
    baseline_id: str
    variants: tuple[Variant, ...] = ()
    category: str | None = None
    pinned: bool = False
    kill_switch: bool = False


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
