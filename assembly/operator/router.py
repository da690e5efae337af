"""`/admin/sync`, `/admin/library`, `/admin/profiles/{id}` (bearer token: `require_admin`)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from assembly.admin.router import get_decisions
from assembly.exceptions import ContentUnavailable
from assembly.operator.library_view import library_json
from assembly.operator.profile_view import visitor_json
from assembly.operator.resync import SyncRuntime, sync_now
from assembly.wiring import DecisionRuntime
from core.admin import require_admin
from core.errors import NotFound
from core.services import started
from integration.wiring import IntegrationServices
from segment_sync.profiles.store import RedisProfileStore

router = APIRouter(prefix="/admin", tags=["admin"])

Admin = Annotated[str, Depends(require_admin)]
_GUARD: dict[int | str, dict[str, Any]] = {
    401: {"description": "Unauthorized: missing or wrong bearer token"},
    404: {"description": "NotFound: the admin API is disabled (no BRIDGE_ADMIN_TOKEN)"},
}
_STORE: dict[int | str, dict[str, Any]] = {
    503: {"description": "StoreUnavailable: Redis did not answer"}
}
STILL_RUNNING = (
    "the sync is still running and continues in the background; GET /readyz (sync.running, "
    "library.version) shows when it is done"
)


def get_integration(request: Request) -> IntegrationServices:
    return started(request, IntegrationServices)


Runtime = Annotated[SyncRuntime, Depends(get_integration)]
Decisions = Annotated[DecisionRuntime, Depends(get_decisions)]


@router.post(
    "/sync",
    summary="Run a delta sync (or a full one) now; answers when it is done or after `wait`",
    responses={
        **_GUARD,
        202: {"description": "still running after `wait` seconds; it continues"},
        409: {"description": "SyncBusy: another sync holds the lease (this or another replica)"},
        502: {"description": "ContentfulError: Contentful refused, or the generation was rejected"},
        503: {"description": "ContentfulUnavailable (retries exhausted) or StoreUnavailable"},
    },
)
async def sync(
    who: Admin,
    runtime: Runtime,
    response: Response,
    full: Annotated[bool, Query(description="a full resync into a new generation")] = False,
    wait: Annotated[
        float, Query(gt=0, le=300, description="seconds to wait for the end (default 30)")
    ] = 30.0,
) -> dict[str, Any]:
    done = await sync_now(runtime, full=full, wait=wait)
    if done is None:
        response.status_code = 202
        return {"status": "running", "full": full, "detail": STILL_RUNNING}
    return done


@router.get(
    "/library",
    summary="This replica's library: templates, slots, variants, experiments, issues",
    responses={**_GUARD, 503: {"description": "ContentUnavailable: no library is loaded yet"}},
)
async def library(who: Admin, runtime: Runtime) -> dict[str, Any]:
    holder = runtime.holder
    loaded = holder.library
    if loaded is None:
        raise ContentUnavailable("no library is loaded on this replica yet")
    generation = holder.generation
    return {
        **library_json(loaded),
        "generation": generation.id if generation else None,
        "generationBuiltAt": generation.built_at if generation else None,
        "epoch": holder.epoch,
    }


@router.get(
    "/profiles/{visitor_id}",
    summary="What the engine knows about a visitor: profile, audience ages, decision state",
    responses={
        **_GUARD,
        **_STORE,
        404: {"description": "ProfileNotFound (nothing known), or the admin API is disabled"},
    },
)
async def profile(
    who: Admin,
    decisions: Decisions,
    visitor_id: Annotated[str, Path(min_length=1, max_length=200)],
    anonymous: Annotated[
        bool, Query(description="the id is an anonymousId (default: a userId)")
    ] = False,
) -> dict[str, Any]:
    profiles = RedisProfileStore(decisions.redis, decisions.keys)
    found = await visitor_json(
        decisions.redis,
        decisions.keys,
        profiles,
        visitor_id,
        anonymous=anonymous,
        now=time.time(),
    )
    if found is None:
        raise ProfileNotFound(
            f"nothing is known about {'anonymousId' if anonymous else 'userId'} {visitor_id!r}"
        )
    return found


class ProfileNotFound(NotFound):
    """No profile and no decision state for this visitor id."""
