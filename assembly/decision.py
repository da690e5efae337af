"""The outcome of one slot's decision."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from assembly.schemas import Source
from integration.model import Variant


@dataclass(frozen=True, slots=True)
class Decision:
    source: Source
    reason: str
    variant: Variant | None = None
    experiment: dict[str, Any] | None = None

    @property
    def personalized(self) -> bool:
        return self.variant is not None
