"""What assembly needs from the rest of the system, as small typed interfaces."""

from __future__ import annotations

from typing import Protocol

from assembly.decisions.state import EMPTY_STATE, DecisionState
from integration.library import Library
from segment_sync.profiles.profile import EMPTY_PROFILE, Profile

__all__ = [
    "EMPTY_PROFILE",
    "LibrarySource",
    "Profile",
    "ProfileOnly",
    "ProfileReader",
    "VisitorReader",
]


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
