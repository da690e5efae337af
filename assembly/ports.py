"""What assembly needs from the rest of the system, as small typed interfaces."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from assembly.decision_state import EMPTY_STATE, DecisionState
from integration.library import Library


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


class ProfileReader(Protocol):
    async def read(self, user_id: str | None, anonymous_id: str | None) -> Profile | None:
        """The merged profile of both ids in one round trip; None when there is none."""
        ...


class VisitorReader(Protocol):
    async def read(
        self, user_id: str | None, anonymous_id: str | None, session_id: str | None
    ) -> tuple[Profile | None, DecisionState]:
        """Profile and decision state of the visitor, in one pipelined round trip."""
        ...


class ProfileOnly:
    """A `VisitorReader` over a plain `ProfileReader`: no decision state (benchmarks, tools)."""

    def __init__(self, profiles: ProfileReader) -> None:
        self._profiles = profiles

    async def read(
        self, user_id: str | None, anonymous_id: str | None, session_id: str | None
    ) -> tuple[Profile | None, DecisionState]:
        return await self._profiles.read(user_id, anonymous_id), EMPTY_STATE


class LibrarySource(Protocol):
    @property
    def library(self) -> Library | None: ...
