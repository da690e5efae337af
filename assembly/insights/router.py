"""`GET /admin/insights` and `/admin/insights/report.html`: the last report `cli.py insights` wrote.

Discovery reads the whole window and fits a model, so it never runs inside a request: the
routes serve the files (INSIGHTS_DIR), and answer 404 `InsightsNotFound` until one exists.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from assembly.insights.config import HTML_NAME, JSON_NAME, InsightsSettings
from assembly.insights.exceptions import InsightsNotFound
from core.admin import require_admin

router = APIRouter(prefix="/admin", tags=["admin"])

Admin = Annotated[str, Depends(require_admin)]
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Unauthorized: missing or wrong bearer token"},
    404: {
        "description": "NotFound: the admin API is disabled (no BRIDGE_ADMIN_TOKEN), or "
        "InsightsNotFound: no report written yet (run `cli.py insights`)"
    },
}
NO_REPORT = "no insights report yet: run `python cli.py insights --goal <event>`"


def _read(name: str) -> bytes:
    path = InsightsSettings().dir / name
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InsightsNotFound(NO_REPORT) from None


@router.get(
    "/insights",
    summary="The last trigger discovery report (JSON): correlations, sequences, model, triggers",
    responses=_ERRORS,
)
async def insights(who: Admin) -> dict[str, Any]:
    report: dict[str, Any] = orjson.loads(await run_in_threadpool(_read, JSON_NAME))
    report["html"] = "/admin/insights/report.html"
    return report


@router.get(
    "/insights/report.html",
    summary="The last trigger discovery report as a self-contained HTML page with plots",
    response_class=HTMLResponse,
    responses=_ERRORS,
)
async def insights_html(who: Admin) -> HTMLResponse:
    return HTMLResponse((await run_in_threadpool(_read, HTML_NAME)).decode())
