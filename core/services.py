"""The started app's services: one typed object, read by the routes through typed getters.

app.py's lifespan builds it and sets it on `app.state.services`, the only write to `app.state`
in the code base. A package's router never reads `app.state` itself: its dependency getter
asks `started(request, PackageServices)` for its own part, found by type and checked.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from fastapi import Request
from starlette.types import Scope

from core.errors import ServiceUnavailable

T = TypeVar("T")


class NotStarted(ServiceUnavailable):
    """The app's lifespan has not started (or has stopped): nothing is wired to answer."""


class Services(Protocol):
    """What app.py's typed services object offers the getters."""

    def part(self, kind: type[T]) -> T:
        """The part of type `kind`; raises `LookupError` when the app has none."""
        ...


def started(request: Request, kind: type[T]) -> T:
    """The started app's part of type `kind` (a FastAPI dependency getter calls this)."""
    return started_in(request.scope, kind)


def started_in(scope: Scope, kind: type[T]) -> T:
    """`started` for a plain ASGI endpoint, from its scope."""
    services: Services | None = getattr(scope["app"].state, "services", None)
    if services is None:
        raise NotStarted("the service is starting or stopping; retry shortly")
    return services.part(kind)
