"""Operations endpoints: liveness, readiness and Prometheus metrics.

`/healthz` and `/readyz` answer `HEAD` too (load balancers and uptime checkers use it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core.responses import OrjsonResponse
from core.services import started

router = APIRouter(tags=["operations"])

ReadinessCheck = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]


@dataclass(frozen=True, slots=True)
class Readiness:
    """The started app's readiness check (app.py wires integration's)."""

    check: ReadinessCheck


async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def readyz(request: Request) -> OrjsonResponse:
    ready, detail = await started(request, Readiness).check()
    return OrjsonResponse(
        {"status": "ready" if ready else "not ready", **detail}, status_code=200 if ready else 503
    )


_PROBES: list[tuple[str, Callable[..., Awaitable[Any]], dict[str, Any]]] = [
    ("/healthz", healthz, {"summary": "Liveness: the process answers"}),
    (
        "/readyz",
        readyz,
        {
            "summary": "Readiness: library loaded and store reachable",
            "responses": {503: {"description": "not ready; the body says why"}},
        },
    ),
]
# One serving route per probe for GET and HEAD (so a 405 lists both in `Allow`), kept out of
# the schema; its GET-only twin, never reached, documents the operation with one operation id.
for _path, _endpoint, _doc in _PROBES:
    router.add_api_route(_path, _endpoint, methods=["GET", "HEAD"], include_in_schema=False)
for _path, _endpoint, _doc in _PROBES:
    router.add_api_route(_path, _endpoint, methods=["GET"], **_doc)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
