"""The guard's direct routes answer exactly as the framework's routes do: the same JSON errors
(a known error rendered by its handler, a store failure as 503 with Retry-After, anything else
as a 500 with a request id), and the same latency label."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from starlette.routing import Route
from starlette.types import Receive, Scope, Send
from structlog.testing import capture_logs

from core.errors import InvalidRequest, install_error_handlers
from core.guard import HttpGuard
from core.metrics import REQUEST_LATENCY
from core.responses import OrjsonResponse
from core.settings import ServiceSettings
from tests.support.redis_server import free_port


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    await OrjsonResponse({"ok": True})(scope, receive, send)


async def _invalid(scope: Scope, receive: Receive, send: Send) -> None:
    raise InvalidRequest("body.template: Field required")


async def _store(scope: Scope, receive: Receive, send: Send) -> None:
    redis = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    try:
        await redis.get("x")
    finally:
        await redis.aclose()


async def _bug(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("a bug with a secret inside")


class _App:
    """An ASGI function as Starlette's Route takes it as an app (not as a Request endpoint)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


APPS = {"/ok": _ok, "/invalid": _invalid, "/store": _store, "/bug": _bug}


def guarded(*, direct: bool) -> FastAPI:
    """Every route registered with the framework; with `direct`, also served by the guard."""
    app = FastAPI()
    install_error_handlers(app, catch_all=False)
    for path, endpoint in APPS.items():
        app.router.routes.append(Route(path, _App(endpoint), methods=["POST"]))
    routes = {("POST", path): endpoint for path, endpoint in APPS.items()} if direct else None
    app.add_middleware(HttpGuard, settings=ServiceSettings, limits={}, cors_paths=(), direct=routes)
    return app


@pytest.fixture
async def clients() -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    def client(app: FastAPI) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b")

    async with client(guarded(direct=False)) as framework, client(guarded(direct=True)) as direct:
        yield framework, direct


@pytest.mark.parametrize("path", ["/ok", "/invalid", "/store"])
async def test_a_direct_route_answers_as_the_framework_does(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient], path: str
) -> None:
    framework, direct = clients
    by_framework, by_guard = await framework.post(path), await direct.post(path)
    assert by_guard.status_code == by_framework.status_code
    assert by_guard.json() == by_framework.json()
    assert by_guard.headers.get("retry-after") == by_framework.headers.get("retry-after")
    assert by_guard.headers["content-type"] == "application/json"


async def test_an_unexpected_error_on_a_direct_route_is_a_json_500_with_a_request_id(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    _, direct = clients
    with capture_logs() as logs:
        answer = await direct.post("/bug", headers={"x-request-id": "edge-1"})
    assert answer.status_code == 500
    assert answer.json()["error"] == "InternalError"
    assert "secret" not in answer.json()["detail"]
    assert answer.headers["x-request-id"] == "edge-1"
    assert [e["request_id"] for e in logs if e["event"] == "http.unexpected_error"] == ["edge-1"]


def _count(path: str) -> float:
    child = REQUEST_LATENCY.labels(path, "POST", "2xx")
    return sum(s.value for m in child.collect() for s in m.samples if s.name.endswith("_count"))


async def test_a_direct_route_is_labelled_by_its_path(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    _, direct = clients
    before = _count("/ok")
    assert (await direct.post("/ok")).status_code == 200
    assert _count("/ok") == before + 1
