"""`POST /v1/assemble`: parse, assemble, answer the pre-encoded JSON."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.requests import ClientDisconnect
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from assembly.preview.router import ASSEMBLE_PREVIEW_ERRORS, assemble_preview
from assembly.schemas import AssembleRequest, AssembleResponse
from assembly.service import AssemblyService
from assembly.wiring import AssemblyServices
from core.errors import InvalidRequest, describe_validation
from core.services import started, started_in

router = APIRouter(tags=["assemble"])

_REQUEST_SCHEMA = {
    "required": True,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AssembleRequest"}}},
}


def get_assembly(request: Request) -> AssemblyService:
    return started(request, AssemblyServices).service


async def assemble(request: Request) -> Response:
    """The endpoint as the OpenAPI schema and FastAPI see it; requests are served by
    `serve_assemble`, which does the same without the Request and Response objects."""
    parsed = _parse(await request.body())
    if parsed.preview:
        return await assemble_preview(request, parsed)
    answer = await get_assembly(request).assemble(parsed)
    return Response(answer, media_type="application/json")


async def serve_assemble(scope: Scope, receive: Receive, send: Send) -> None:
    """`POST /v1/assemble` as a plain ASGI app: the body read from `receive`, the pre-encoded
    answer sent as two messages. `core.guard.HttpGuard` calls it directly (a `direct` route)
    and renders its errors as the app's handlers do; `fast_route` serves it on other ways in."""
    parsed = _parse(await _body(receive))
    if parsed.preview:
        request = Request(scope, receive)
        response = await assemble_preview(request, parsed)
        await response(scope, receive, send)
        return
    answer = await started_in(scope, AssemblyServices).service.assemble(parsed)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", _JSON), (b"content-length", b"%d" % len(answer))],
        }
    )
    await send({"type": "http.response.body", "body": answer})


_JSON = b"application/json"


def _parse(body: bytes) -> AssembleRequest:
    try:
        return AssembleRequest.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidRequest(describe_validation(list(exc.errors()))) from exc


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class _PlainAsgi:
    """Wraps an ASGI function so Starlette's Route takes it as an app, not as an endpoint
    that wants a Request (Route only wraps functions and methods)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


# Served by a plain ASGI route: the hot path skips FastAPI's dependency solving and Starlette's
# Request and Response objects (each a share of a page view's CPU, profiled). The APIRouter
# registration below is what the OpenAPI schema shows.
fast_route = Route("/v1/assemble", _PlainAsgi(serve_assemble), methods=["POST"])

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
