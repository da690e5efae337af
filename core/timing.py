"""Request latency histogram as a pure ASGI middleware (cheap on the hot path)."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.metrics import REQUEST_LATENCY


class LatencyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._children: dict[tuple[str, str, str], object] = {}

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
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            labels = (path, scope["method"], f"{status // 100}xx")
            child = self._children.get(labels)
            if child is None:
                child = REQUEST_LATENCY.labels(*labels)
                self._children[labels] = child
            child.observe(time.perf_counter() - started)  # type: ignore[attr-defined]
