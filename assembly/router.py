"""`POST /v1/assemble`: parse, assemble, answer the pre-encoded JSON."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from assembly.schemas import AssembleRequest, AssembleResponse
from assembly.service import AssemblyService
from core.errors import InvalidRequest, describe_validation

router = APIRouter(tags=["assemble"])

_REQUEST_SCHEMA = {
    "required": True,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AssembleRequest"}}},
}


def get_assembly(request: Request) -> AssemblyService:
    service: AssemblyService = request.app.state.assembly
    return service


@router.post(
    "/v1/assemble",
    response_model=AssembleResponse,
    openapi_extra={"requestBody": _REQUEST_SCHEMA},
    responses={
        404: {"description": "TemplateNotFound or SlotNotFound"},
        413: {"description": "PayloadTooLarge: body over 64 KB"},
        422: {"description": "InvalidRequest or UnknownLocale"},
    },
    summary="Personalized content for every slot of a page",
)
async def assemble(request: Request) -> Response:
    body = await request.body()
    try:
        parsed = AssembleRequest.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidRequest(describe_validation(list(exc.errors()))) from exc
    answer = await get_assembly(request).assemble(parsed)
    return Response(answer, media_type="application/json")
