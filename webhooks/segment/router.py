"""`POST /webhooks/segment`: Segment's Webhooks destination (classic or Actions) to the pipeline."""

from __future__ import annotations

from fastapi import APIRouter, Request

from core.responses import OrjsonResponse
from core.services import started
from webhooks.segment.service import SegmentWebhook
from webhooks.verification import SEGMENT_SIGNATURE
from webhooks.wiring import WebhookServices

router = APIRouter(tags=["webhooks"])


def get_segment_webhook(request: Request) -> SegmentWebhook:
    return started(request, WebhookServices).segment


@router.post(
    "/webhooks/segment",
    summary="Segment events and Engage audience changes (signed with X-Signature)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": ["object", "array"]}}},
        }
    },
    responses={
        200: {
            "description": '`{"status": "accepted"|"duplicate", "accepted", "duplicates"}`, '
            'plus `rejected` (`[{"index", "messageId", "detail"}]`) when some events of an '
            "array were bad: the others were accepted"
        },
        400: {
            "description": "InvalidPayload: not JSON, or no usable event (no userId/anonymousId, "
            "bad audience flag, nested too deep, ...)"
        },
        401: {"description": "SignatureMissing, SignatureMalformed or SignatureInvalid"},
        404: {"description": "WebhookDisabled: SEGMENT_WEBHOOK_SECRETS is unset"},
        413: {"description": "PayloadTooLarge: body over 1 MB"},
        503: {"description": "WebhookStoreUnavailable: nothing was accepted; Segment retries"},
    },
)
async def segment_webhook(request: Request) -> OrjsonResponse:
    service = get_segment_webhook(request)
    result = await service.receive(await request.body(), request.headers.get(SEGMENT_SIGNATURE))
    return OrjsonResponse(result.body())
