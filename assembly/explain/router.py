"""`POST /admin/explain`: the assemble body, every slot's rules and why the winner won."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError

from assembly.explain.schemas import ExplainResponse
from assembly.explain.service import ExplainService
from assembly.schemas import AssembleRequest
from assembly.wiring import AssemblyServices
from core.admin import require_admin
from core.errors import InvalidRequest, describe_validation
from core.services import started

router = APIRouter(prefix="/admin", tags=["admin"])

# The assemble body, published content only: `preview: true` is refused (422).
_BODY = {
    "allOf": [
        {"$ref": "#/components/schemas/AssembleRequest"},
        {"properties": {"preview": {"const": False}}},
    ]
}
_REQUEST_SCHEMA = {"required": True, "content": {"application/json": {"schema": _BODY}}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Unauthorized: missing or wrong bearer token"},
    404: {"description": "admin API disabled, TemplateNotFound or SlotNotFound"},
    422: {"description": "InvalidRequest, UnknownLocale or PreviewUnavailable"},
    503: {"description": "ContentUnavailable: no library is loaded"},
}


def get_explain(request: Request) -> ExplainService:
    """Reads what assemble reads: its library, reader, engine and clock."""
    assembly = started(request, AssemblyServices)
    decisions = assembly.decisions
    return ExplainService(
        decisions.libraries, decisions.reader, decisions.engine, assembly.service.clock
    )


@router.post(
    "/explain",
    summary="Why each slot shows what it shows: every candidate and rule; writes nothing",
    response_model=ExplainResponse,
    openapi_extra={"requestBody": _REQUEST_SCHEMA},
    responses=_ERRORS,
)
async def explain(
    request: Request,
    who: Annotated[str, Depends(require_admin)],
    service: Annotated[ExplainService, Depends(get_explain)],
) -> dict[str, Any]:
    try:
        body = AssembleRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise InvalidRequest(describe_validation(list(exc.errors()))) from exc
    return await service.explain(body)
