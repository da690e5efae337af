"""`/admin/*` routes of the decision engine (bearer token: `core.admin.require_admin`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from assembly.admin import service as admin
from assembly.schemas import SwitchChange
from assembly.wiring import AssemblyServices, DecisionRuntime
from core.admin import require_admin
from core.services import started

router = APIRouter(prefix="/admin", tags=["admin"])

Admin = Annotated[str, Depends(require_admin)]
TargetScope = Literal["template", "slot", "variant"]
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Unauthorized: missing or wrong bearer token"},
    404: {"description": "admin API disabled, or unknown target / switch not set"},
    422: {"description": "InvalidRequest: a reason is required"},
    503: {"description": "StoreUnavailable: Redis did not answer (with Retry-After)"},
}
UNSTORED = (
    "Redis did not answer: the switch is in force on this replica only; it is stored and "
    "announced to the other replicas as soon as Redis answers again"
)


def get_decisions(request: Request) -> DecisionRuntime:
    return started(request, AssemblyServices).decisions


Decisions = Annotated[DecisionRuntime, Depends(get_decisions)]


@router.get(
    "/kill-switches", summary="Kill switches in force, and the audit log", responses=_ERRORS
)
async def list_switches(
    who: Admin, decisions: Decisions, audit: Annotated[int, Query(ge=0, le=1000)] = 50
) -> dict[str, Any]:
    return await admin.list_switches(decisions, audit)


@router.post(
    "/kill-switches/global",
    summary="Serve baselines everywhere",
    responses={
        **_ERRORS,
        202: {"description": "in force on this replica; stored and announced when Redis is back"},
    },
)
async def set_global(
    who: Admin, decisions: Decisions, body: SwitchChange, response: Response
) -> dict[str, Any]:
    switch, stored = await admin.set_global(decisions, by=who, reason=body.reason)
    if not stored:
        response.status_code = 202
        return {**switch.to_json(), "stored": False, "detail": UNSTORED}
    return {**switch.to_json(), "stored": True}


@router.delete("/kill-switches/global", summary="Lift the global switch", responses=_ERRORS)
async def clear_global(who: Admin, decisions: Decisions, body: SwitchChange) -> dict[str, Any]:
    old = await admin.clear_switch(decisions, "global", "", by=who, reason=body.reason)
    return {"cleared": old.to_json()}


@router.post(
    "/kill-switches/{scope}/{key}",
    summary="Serve the baseline for a template, slot or variant",
    responses=_ERRORS,
)
async def set_switch(
    scope: TargetScope, key: str, who: Admin, decisions: Decisions, body: SwitchChange
) -> dict[str, Any]:
    switch = await admin.set_switch(decisions, scope, key, by=who, reason=body.reason)
    return switch.to_json()


@router.delete("/kill-switches/{scope}/{key}", summary="Lift a kill switch", responses=_ERRORS)
async def clear_switch(
    scope: TargetScope, key: str, who: Admin, decisions: Decisions, body: SwitchChange
) -> dict[str, Any]:
    old = await admin.clear_switch(decisions, scope, key, by=who, reason=body.reason)
    return {"cleared": old.to_json()}


@router.get(
    "/experiments/{key}/results",
    summary="Per arm: exposures, conversions, rate, uplift (95% CI), p-value, P(beat), SRM",
    responses=_ERRORS,
)
async def experiment_results(key: str, who: Admin, decisions: Decisions) -> dict[str, Any]:
    return await admin.results(decisions, key)


@router.get("/rollouts", summary="Measured rollouts and their guardrail", responses=_ERRORS)
async def rollouts(who: Admin, decisions: Decisions) -> dict[str, Any]:
    return await admin.rollouts(decisions)
