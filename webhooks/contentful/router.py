"""`POST /webhooks/contentful`: hand the raw request to the service and answer its outcome."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.types import Scope

from core.responses import OrjsonResponse
from core.services import started
from webhooks.contentful.service import ContentfulRequest, ContentfulWebhookService
from webhooks.exceptions import WebhookDisabled
from webhooks.wiring import WebhookServices

router = APIRouter(tags=["webhooks"])

_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Handled: `status` is applied, duplicate, stale, ignored or resync",
        "content": {"application/json": {"example": {"status": "applied", "version": 42}}},
    },
    400: {"description": "InvalidPayload: a verified body that is not a Contentful payload"},
    401: {
        "description": "SignatureMissing, SignatureMalformed, SignatureInvalid or SignatureExpired"
    },
    404: {"description": "WebhookDisabled: CONTENTFUL_WEBHOOK_SECRETS is unset"},
    413: {"description": "PayloadTooLarge: body over 1 MB"},
    503: {"description": "WebhookStoreUnavailable: nothing was applied; Contentful retries"},
}


def get_contentful_webhooks(request: Request) -> ContentfulWebhookService:
    service = started(request, WebhookServices).contentful
    if service is None:
        raise WebhookDisabled("Contentful webhooks are not enabled (CONTENTFUL_WEBHOOK_SECRETS)")
    return service


def raw_target(scope: Scope) -> str:
    """The request target as sent (path and query, percent-encoding kept), for the signature."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
    query: bytes = scope.get("query_string") or b""
    target = raw + b"?" + query if query else raw
    return target.decode("utf-8", "surrogateescape")


@router.post(
    "/webhooks/contentful",
    summary="Contentful webhook: publish, unpublish, delete, archive; content type changes",
    responses=_ANSWERS,
    response_class=OrjsonResponse,
)
async def contentful_webhook(
    request: Request,
    service: Annotated[ContentfulWebhookService, Depends(get_contentful_webhooks)],
) -> OrjsonResponse:
    answer = await service.receive(
        ContentfulRequest(
            method=request.method,
            path=raw_target(request.scope),
            headers={name.lower(): value for name, value in request.headers.items()},
            body=await request.body(),
        )
    )
    return OrjsonResponse(answer.to_json())
