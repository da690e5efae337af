"""The visitor as decisions see it: audiences, consent, and the condition document.

A CDP membership is *fresh* for an audience with `maxAgeSeconds` when the CDP confirmed it at
most that long ago (the profile's `audience_times`), or when the request itself names it
(`context.audiences`). Otherwise it counts as unknown: the audience does not match, and the
audience is remembered as stale so that the reason can say so.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from assembly.ports import EMPTY_PROFILE, Profile
from assembly.schemas import AssembleRequest
from integration.model import Audience


@dataclass(slots=True)
class Visitor:
    user_id: str | None
    anonymous_id: str | None
    session_id: str | None
    audiences: frozenset[str]
    personas: frozenset[str]
    consent: bool
    doc: dict[str, Any]
    confirmed: Mapping[str, float] = field(default_factory=dict)
    """CDP audience key → when the profile's membership was last confirmed (epoch seconds)."""
    requested: frozenset[str] = frozenset()
    """Audience keys the request names (`context.audiences`): confirmed by the caller, now."""
    now: float = 0.0
    _matches: dict[str, bool] = field(default_factory=dict)
    _stale: dict[str, str] = field(default_factory=dict)

    def hash_value(self, attribute: str) -> str | None:
        """The value experiments and rollouts hash on; `id` is the userId, else anonymousId."""
        if attribute == "id":
            return self.user_id or self.anonymous_id
        if attribute == "anonymousId":
            return self.anonymous_id
        for part in ("attributes", "traits"):
            value = self.doc[part].get(attribute)
            if value is not None and value != "":
                return str(value)
        return None

    def in_audience(self, audience: Audience) -> bool:
        """Segments any-of (fresh ones), personas any-of, and the condition; memoized."""
        known = self._matches.get(audience.id)
        if known is None:
            known = self._match(audience)
            self._matches[audience.id] = known
        return known

    def _match(self, audience: Audience) -> bool:
        segments = audience.segments
        if segments and segments.isdisjoint(self.audiences):
            return False
        if audience.personas and audience.personas.isdisjoint(self.personas):
            return False
        if audience.condition is not None and not audience.condition.test(self.doc):
            return False
        if not segments or audience.max_age_seconds is None:
            return True
        if any(self.fresh(s, audience.max_age_seconds) for s in segments & self.audiences):
            return True
        self._stale[audience.id] = audience.key
        return False

    def fresh(self, segment: str, max_age: float) -> bool:
        """Whether the membership in `segment` was confirmed at most `max_age` seconds ago."""
        if segment in self.requested:
            return True
        confirmed = self.confirmed.get(segment)
        return confirmed is not None and self.now - confirmed <= max_age

    def stale_among(self, audiences: Sequence[Audience]) -> str | None:
        """The key of the first of `audiences` that failed only on a stale membership."""
        if not self._stale:
            return None
        for audience in audiences:
            if audience.id in self._stale:
                return audience.key
        return None


def build_visitor(
    request: AssembleRequest, profile: Profile | None, now: float | None = None
) -> Visitor:
    """The visitor of one request; `now` (epoch seconds, default: the wall clock) dates the
    audience memberships."""
    profile = profile or EMPTY_PROFILE
    ctx = request.context
    traits = {**profile.traits, **ctx.traits}
    audiences = profile.audiences.union(ctx.audiences)
    personas = traits.get("personas")
    consent = ctx.consent if ctx.consent is not None else profile.consent
    doc = {
        "attributes": ctx.attributes,
        "traits": traits,
        "audiences": sorted(audiences),
        "signals": profile.signals,
        "page": ctx.page,
        "session": {"id": request.sessionId},
        "user": {"id": request.user.id, "anonymousId": request.user.anonymousId},
    }
    return Visitor(
        user_id=request.user.id,
        anonymous_id=request.user.anonymousId,
        session_id=request.sessionId,
        audiences=audiences,
        personas=frozenset(p for p in personas if isinstance(p, str))
        if isinstance(personas, list)
        else frozenset(),
        consent=consent is not False,
        doc=doc,
        confirmed=profile.audience_times,
        requested=frozenset(ctx.audiences),
        now=time.time() if now is None else now,
    )
