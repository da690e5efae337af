"""The read model of a visitor's profile, as the profile store decodes it for the engine."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Profile:
    """What the store knows of a visitor: CDP traits and audiences, consent, signals.

    `audience_times`: audience key → when the CDP last confirmed that membership (epoch
    seconds); a member audience without one has no known confirmation time.
    """

    traits: Mapping[str, Any] = field(default_factory=dict)
    audiences: frozenset[str] = frozenset()
    signals: Mapping[str, Any] = field(default_factory=dict)
    consent: bool | None = None
    audience_times: Mapping[str, float] = field(default_factory=dict)


EMPTY_PROFILE = Profile()
