"""The outcome of one slot's decision."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from assembly.decisions.state import Assignment, Exposure
from assembly.schemas import Source
from integration.model import Variant


@dataclass(slots=True)
class TestEntry:
    """The test (experiment or rollout split) a decision took part in, to record off-path."""

    exposure: Exposure
    assignment: Assignment
    new: bool  # the assignment is not stored yet (or, for a rollout, moved)
    overwrite: bool  # rollouts follow their share; experiments stay sticky


@dataclass(slots=True)
class Decision:
    source: Source
    reason: str
    variant: Variant | None = None
    experiment: dict[str, Any] | None = None
    tests: tuple[TestEntry, ...] = ()
    marker: str | None = None  # what session coherence remembers for the slot

    @property
    def personalized(self) -> bool:
        """Counts against `maxPersonalized`: a variant, or any arm of an experiment (fair split)."""
        return self.variant is not None or self.source == "experiment"
