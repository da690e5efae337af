"""`POST /v1/assemble`: parse, assemble, answer the pre-encoded JSON."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.routing import Route

from assembly.preview.router import ASSEMBLE_PREVIEW_ERRORS, assemble_preview
from assembly.schemas import AssembleRequest, AssembleResponse
from assembly.service import AssemblyService
from assembly.wiring import AssemblyServices
from core.errors import InvalidRequest, describe_validation
from core.services import started

router = APIRouter(tags=["assemble"])

_REQUEST_SCHEMA = {
    "required": True,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AssembleRequest"}}},
}


def get_assembly(request: Request) -> AssemblyService:
    return started(request, AssemblyServices).service


async def assemble(request: Request) -> Response:
    body = await request.body()
    try:
        parsed = AssembleRequest.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidRequest(describe_validation(list(exc.errors()))) from exc
    if parsed.preview:
        return await assemble_preview(request, parsed)
    answer = await get_assembly(request).assemble(parsed)
    return Response(answer, media_type="application/json")


# Served by a plain Starlette route: the hot path skips FastAPI's dependency solving (about a
# tenth of a request's CPU). The APIRouter registration below is what the OpenAPI schema shows.
fast_route = Route("/v1/assemble", assemble, methods=["POST"])

router.add_api_route(
    "/v1/assemble",
    assemble,
    methods=["POST"],
    response_model=AssembleResponse,
    openapi_extra={"requestBody": _REQUEST_SCHEMA},
    responses={
        **ASSEMBLE_PREVIEW_ERRORS,
        404: {"description": "TemplateNotFound, SlotNotFound, or PreviewTargetNotFound"},
        413: {"description": "PayloadTooLarge: body over 64 KB"},
        422: {"description": "InvalidRequest or UnknownLocale"},
    },
    summary="Personalized content for every slot of a page",
)
