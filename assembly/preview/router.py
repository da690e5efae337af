"""Preview routes: `preview: true` on `/v1/assemble`, `GET /preview/{template}` (HTML) and
`GET /preview/entry/{entry_id}` (Contentful's content preview URL)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import StringConstraints

from assembly.preview.auth import KEY_PARAM, require_preview
from assembly.preview.entries import templates_using
from assembly.preview.exceptions import EntryNotUsed
from assembly.preview.page import PageQuery, page_url, render_entry_links, render_page
from assembly.preview.service import PreviewService
from assembly.schemas import AssembleRequest
from assembly.wiring import AssemblyServices
from core.services import started

router = APIRouter(prefix="/preview", tags=["preview"])

_HTML = {"content": {"text/html": {"schema": {"type": "string"}}}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "PreviewUnauthorized: no preview key, or a wrong one"},
    403: {"description": "PreviewDisabled: neither BRIDGE_PREVIEW_KEY nor BRIDGE_ADMIN_TOKEN"},
    404: {"description": "TemplateNotFound, or PreviewTargetNotFound (a forced key)"},
    422: {"description": "InvalidRequest or UnknownLocale"},
    503: {"description": "DraftsUnavailable (the Preview API failed) or ContentUnavailable"},
}
# What `/v1/assemble` answers besides its own errors when `preview` is true.
ASSEMBLE_PREVIEW_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _ERRORS[401],
    403: _ERRORS[403],
    503: _ERRORS[503],
}

# An empty value is a control left at "the rules decide".
Choice = Annotated[str, StringConstraints(max_length=200)]
Pair = Annotated[str, StringConstraints(pattern=r"^([^:]+:.+)?$", max_length=400)]
Key = Annotated[str | None, Query(alias=KEY_PARAM, description="the preview key")]


def get_preview(request: Request) -> PreviewService:
    return started(request, AssemblyServices).preview


async def assemble_preview(request: Request, parsed: AssembleRequest) -> Response:
    """`/v1/assemble` with `preview: true`: the secret first, then the preview answer."""
    service = get_preview(request)
    require_preview(request, service.key)
    result = await service.preview(parsed)
    return Response(orjson.dumps(result.to_json()), media_type="application/json")


@router.get(
    "/entry/{entry_id}",
    response_class=HTMLResponse,
    summary="The preview pages that use an entry (Contentful's content preview URL)",
    responses={
        200: {"description": "links to every template that uses the entry", **_HTML},
        307: {"description": "exactly one template uses the entry: its preview page"},
        **_ERRORS,
        404: {"description": "EntryNotUsed: no template uses the entry"},
    },
)
async def preview_entry(
    request: Request,
    entry_id: Annotated[str, Path(min_length=1, max_length=64)],
    key: Key = None,
) -> Response:
    service = get_preview(request)
    require_preview(request, service.key)
    library, _, _, _ = await service.library("drafts")
    uses = templates_using(library, entry_id)
    if not uses:
        raise EntryNotUsed(f"no template uses entry {entry_id!r}")
    links = [(u.template, u.how, page_url(f"/preview/{u.template}", key, **u.params)) for u in uses]
    if len(links) == 1:
        return RedirectResponse(links[0][2], status_code=307)
    return HTMLResponse(render_entry_links(entry_id, links))


@router.get(
    "/{template}",
    response_class=HTMLResponse,
    summary="The page as a visitor would see it, from drafts, with controls for editors",
    responses={200: {"description": "the preview page", **_HTML}, **_ERRORS},
)
async def preview_page(
    request: Request,
    template: Annotated[str, Path(min_length=1, max_length=200)],
    key: Key = None,
    content: Annotated[Literal["drafts", "published"], Query()] = "drafts",
    locale: Annotated[str | None, Query(min_length=2, max_length=35)] = None,
    audience: Annotated[list[Choice], Query(description="an mbAudience key")] = [],  # noqa: B006
    variant: Annotated[list[Pair], Query(description="<slot>:<variant or baseline>")] = [],  # noqa: B006
    arm: Annotated[list[Pair], Query(description="<experiment>:<arm or control>")] = [],  # noqa: B006
) -> HTMLResponse:
    service = get_preview(request)
    require_preview(request, service.key)
    query = PageQuery.parse(
        template,
        key=key,
        content=content,
        locale=locale,
        audience=audience,
        variant=variant,
        arm=arm,
    )
    result = await service.preview(query.request())
    return HTMLResponse(render_page(result, query))
