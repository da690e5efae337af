"""Segment-compatible tracking API (`/v1/batch`, `/v1/track`, …) and profile erasure.

Endpoints parse nothing themselves: the raw body goes to `TrackingService.ingest`, which answers
`{"success": true}` (plus `accepted` and `rejected` when some messages of a batch were refused).
docs/events.md has the exact behaviour.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel
from redis.exceptions import RedisError

from core.admin import require_admin
from core.responses import OrjsonResponse
from core.services import started
from segment_sync import metrics
from segment_sync.exceptions import EventStoreUnavailable, MessagesRejected, SegmentSyncError
from segment_sync.profiles.store import RedisProfileStore
from segment_sync.tracking.schemas import (
    AliasMessage,
    BatchRequest,
    GroupMessage,
    IdentifyMessage,
    PageMessage,
    TrackingAnswer,
    TrackMessage,
)
from segment_sync.tracking.service import TrackingService
from segment_sync.wiring import SegmentSyncServices

router = APIRouter(tags=["tracking"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "bad JSON, no valid message, over 2,500 messages (detail says which)"},
    401: {"description": "WriteKeyInvalid: missing or unknown write key"},
    404: {"description": "TrackingDisabled: SEGMENT_WRITE_KEYS unset"},
    413: {"description": "PayloadTooLarge: over 500 KB (batch, also once gunzipped) or 32 KB"},
    415: {"description": "UnsupportedEncoding: a Content-Encoding other than gzip"},
    503: {"description": "EventStoreUnavailable: Redis did not take the events; retry"},
}


def get_tracking(request: Request) -> TrackingService:
    return started(request, SegmentSyncServices).tracking


def get_profiles(request: Request) -> RedisProfileStore:
    return started(request, SegmentSyncServices).profiles


async def _ingest(request: Request, kind: str | None) -> Response:
    body = await request.body()
    try:
        result = await get_tracking(request).ingest(
            body,
            kind=kind,
            encoding=request.headers.get("content-encoding"),
            authorization=request.headers.get("authorization"),
        )
    except MessagesRejected as exc:
        metrics.REQUESTS_REFUSED.labels(error=exc.name).inc()
        content = {"error": exc.name, "detail": exc.detail, "rejected": exc.rejected}
        return OrjsonResponse(content, status_code=exc.status_code)
    except SegmentSyncError as exc:
        metrics.REQUESTS_REFUSED.labels(error=exc.name).inc()
        raise
    except (RedisError, OSError) as exc:
        metrics.REQUESTS_REFUSED.labels(error="EventStoreUnavailable").inc()
        raise EventStoreUnavailable(
            f"the event store is unavailable ({type(exc).__name__})"
        ) from exc
    return OrjsonResponse(result.body())


def _route(path: str, kind: str | None, model: type[BaseModel], summary: str) -> None:
    async def endpoint(request: Request) -> Response:
        return await _ingest(request, kind)

    endpoint.__name__ = f"tracking_{kind or 'batch'}"
    router.add_api_route(
        path,
        endpoint,
        methods=["POST"],
        response_model=TrackingAnswer,
        responses=_ERRORS,
        summary=summary,
        openapi_extra={
            "requestBody": {
                "required": True,
                # browser SDKs send `text/plain` (no CORS preflight); the body is JSON either way
                "content": {
                    media: {"schema": model.model_json_schema()}
                    for media in ("application/json", "text/plain")
                },
            }
        },
    )


_route("/v1/batch", None, BatchRequest, "Segment batch: up to 2,500 messages, 500 KB")
_route("/v1/track", "track", TrackMessage, "Segment track")
_route("/v1/identify", "identify", IdentifyMessage, "Segment identify")
_route("/v1/page", "page", PageMessage, "Segment page")
_route("/v1/screen", "screen", PageMessage, "Segment screen")
_route("/v1/group", "group", GroupMessage, "Segment group")
_route("/v1/alias", "alias", AliasMessage, "Segment alias")


@router.delete(
    "/v1/profiles/{user_id}",
    status_code=204,
    tags=["privacy"],
    summary="Erase a user's profile, linked ids and counters (admin token)",
    responses={401: {"description": "no valid admin token"}, 404: {"description": "admin off"}},
)
async def erase_profile(
    user_id: Annotated[str, Path(min_length=1, max_length=256)],
    _: Annotated[str, Depends(require_admin)],
    profiles: Annotated[RedisProfileStore, Depends(get_profiles)],
) -> Response:
    try:
        await profiles.erase(user_id)
    except (RedisError, OSError) as exc:
        raise EventStoreUnavailable(
            f"the profile store is unavailable ({type(exc).__name__})"
        ) from exc
    return Response(status_code=204)
