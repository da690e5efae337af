"""Request latency histogram as a pure ASGI middleware (cheap on the hot path).

Requests are labelled by their route's path template: FastAPI routes put themselves in the
scope (`route`); plain Starlette routes (the fast `/v1/assemble`) only put their endpoint, so
their path is looked up from the app's routes. Anything else is `unmatched`.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.metrics import REQUEST_LATENCY


class LatencyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._children: dict[tuple[str, str, str], object] = {}
        self._endpoint_paths: dict[Any, str] | None = None

    def route_label(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is not None:
            return str(getattr(route, "path", "unmatched"))
        endpoint = scope.get("endpoint")
        if endpoint is None:
            return "unmatched"
        if self._endpoint_paths is None:
            routes = getattr(scope.get("app"), "routes", ())
            self._endpoint_paths = {r.endpoint: r.path for r in routes if isinstance(r, Route)}
        return self._endpoint_paths.get(endpoint, "unmatched")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, record)
        finally:
            labels = (self.route_label(scope), scope["method"], f"{status // 100}xx")
            child = self._children.get(labels)
            if child is None:
                child = REQUEST_LATENCY.labels(*labels)
                self._children[labels] = child
            child.observe(time.perf_counter() - started)  # type: ignore[attr-defined]
