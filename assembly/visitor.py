"""The visitor as decisions see it: audiences, consent, and the condition document."""

from __future__ import annotations

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
    _matches: dict[str, bool] = field(default_factory=dict)

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
        """Segments any-of, personas any-of, and the condition; memoized per request."""
        known = self._matches.get(audience.id)
        if known is None:
            known = (
                (not audience.segments or not audience.segments.isdisjoint(self.audiences))
                and (not audience.personas or not audience.personas.isdisjoint(self.personas))
                and (audience.condition is None or audience.condition(self.doc))
            )
            self._matches[audience.id] = known
        return known


def build_visitor(request: AssembleRequest, profile: Profile | None) -> Visitor:
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
    )
