"""Request latency histogram, observed by `core.guard.HttpGuard` for every request.

Requests are labelled by their route's path template: FastAPI routes put themselves in the
scope (`route`); plain Starlette routes (the fast `/v1/assemble`) only put their endpoint, so
their path is looked up from the app's routes; the guard's direct routes are labelled by the
guard. Anything else is `unmatched`.
"""

from __future__ import annotations

from typing import Any

from starlette.routing import Route
from starlette.types import Scope

from core.metrics import REQUEST_LATENCY


class LatencyRecorder:
    """Observes each request's latency under its route's label (children cached)."""

    def __init__(self) -> None:
        self._children: dict[tuple[str, str, str], Any] = {}
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

    def observe(self, scope: Scope, status: int, seconds: float, route: str | None = None) -> None:
        """`route`: the label when the caller knows it (a direct route of the guard)."""
        labels = (route or self.route_label(scope), scope["method"], f"{status // 100}xx")
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = REQUEST_LATENCY.labels(*labels)
        child.observe(seconds)
