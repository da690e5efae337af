"""`/admin/decisions*`: a logged decision, a visitor's decisions around a time, replay."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from assembly.decision_log.service import DecisionLog
from assembly.wiring import AssemblyServices
from core.admin import require_admin
from core.services import started

router = APIRouter(prefix="/admin/decisions", tags=["admin"])

Admin = Annotated[str, Depends(require_admin)]
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Unauthorized: missing or wrong bearer token"},
    404: {"description": "admin API disabled, or DecisionNotFound: not logged (any more)"},
    503: {"description": "StoreUnavailable: Redis did not answer (with Retry-After)"},
}


def get_decision_log(request: Request) -> DecisionLog:
    return started(request, AssemblyServices).decision_log


Log = Annotated[DecisionLog, Depends(get_decision_log)]


@router.get(
    "",
    summary="A visitor's logged decisions around a time (userId or anonymousId)",
    responses={**_ERRORS, 422: {"description": "InvalidRequest: visitor, at or window"}},
)
async def around(
    who: Admin,
    log: Log,
    visitor: Annotated[str, Query(min_length=1, max_length=256)],
    at: Annotated[datetime | None, Query(description="ISO time; default now (UTC)")] = None,
    window: Annotated[int, Query(ge=1, le=86400, description="seconds either side")] = 300,
) -> dict[str, Any]:
    return await log.around(visitor, at, window)


@router.get("/{decision_id}", summary="One logged decision record", responses=_ERRORS)
async def get_decision(decision_id: str, who: Admin, log: Log) -> dict[str, Any]:
    return await log.get(decision_id)


@router.post(
    "/{decision_id}/replay",
    summary="Decide a logged page view again and compare the choices",
    responses={
        **_ERRORS,
        409: {"description": "DecisionNotReplayable: the fallback library answered"},
        503: {"description": "StoreUnavailable, or LibraryNotLoaded on this replica"},
    },
)
async def replay(decision_id: str, who: Admin, log: Log) -> dict[str, Any]:
    return await log.replay(decision_id)
