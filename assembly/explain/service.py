"""`explain`: the assemble request's page, decided again with every rule's outcome shown.

It reads what assemble reads (the live library, the profile and decision state in one round
trip, the kill switches in memory, the same clock) and writes nothing: no exposures, counts,
sticky assignments or session marks, and no profile pull. When the store does not answer, the
explanation is that of a degraded page view (request context only), as assemble would serve.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog
from redis.exceptions import RedisError

from assembly.decisions.engine import DecisionEngine, page_switch
from assembly.decisions.selection import locale_of, select_slots
from assembly.decisions.state import EMPTY_STATE, DecisionState
from assembly.decisions.visitor import Visitor, build_visitor
from assembly.exceptions import ContentUnavailable, PreviewUnavailable
from assembly.explain.page import page_steps
from assembly.explain.slots import explain_slot
from assembly.explain.steps import step
from assembly.ports import LibrarySource, Profile, VisitorReader
from assembly.schemas import AssembleRequest

log = structlog.get_logger()

READ_TIMEOUT_SECONDS = 2.0


class ExplainService:
    def __init__(
        self,
        libraries: LibrarySource,
        reader: VisitorReader,
        engine: DecisionEngine,
        clock: Callable[[], datetime],
    ) -> None:
        self._libraries = libraries
        self._reader = reader
        self._engine = engine
        self._clock = clock

    async def explain(self, request: AssembleRequest) -> dict[str, Any]:
        if request.preview:
            raise PreviewUnavailable("explain covers published content: send preview: false")
        library = self._libraries.library
        if library is None:
            raise ContentUnavailable("no library is loaded: assemble serves the fallback")
        template, slots = select_slots(library, request)
        locale = locale_of(library, request.locale)
        profile, state, store_ok = await self._read(request)
        now = self._clock()
        visitor = build_visitor(request, profile, now.timestamp())
        env = self._engine.env(visitor, state, now)
        switch = page_switch(library, template, env.board)
        traces = [explain_slot(slot, visitor, now, switch, env) for slot in slots]
        half_life = self._engine.settings.engagement_half_life_seconds
        shown, steps = page_steps(template, traces, visitor, env.now_ts, half_life)
        page_switch_step = step("kill switches", "decided" if switch else "pass", switch or "none")
        log.info("assembly.explain.done", template=request.template, slots=len(shown))
        return {
            "template": request.template,
            "locale": locale,
            "contentVersion": library.version,
            "degraded": not store_ok,
            "at": now.isoformat(),
            "visitor": _visitor_facts(request, profile, visitor, state),
            "page": [page_switch_step, *steps],
            "slots": [{**t.to_json(), "position": i} for i, t in enumerate(shown)],
        }

    async def _read(self, request: AssembleRequest) -> tuple[Profile | None, DecisionState, bool]:
        """What assemble's read returns, without its breaker and its profile pull on a miss."""
        user = request.user
        if user.id is None and user.anonymousId is None:
            return None, EMPTY_STATE, True
        try:
            read = self._reader.read(user.id, user.anonymousId, request.sessionId)
            profile, state = await asyncio.wait_for(read, READ_TIMEOUT_SECONDS)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("assembly.explain.store_unavailable", error=type(exc).__name__)
            return None, EMPTY_STATE, False
        return profile, state, True


def _visitor_facts(
    request: AssembleRequest, profile: Profile | None, visitor: Visitor, state: DecisionState
) -> dict[str, Any]:
    if request.context.consent is not None:
        consent_from = "request"
    elif profile is not None and profile.consent is not None:
        consent_from = "profile"
    else:
        consent_from = "default"
    return {
        "userId": visitor.user_id,
        "anonymousId": visitor.anonymous_id,
        "sessionId": visitor.session_id,
        "consent": {"value": visitor.consent, "from": consent_from},
        "audiences": sorted(visitor.audiences),
        "personas": sorted(visitor.personas),
        "traits": visitor.doc["traits"],
        "signals": visitor.doc["signals"],
        "stateKey": state.key,
    }
