"""CORS for the browser-facing routes: `/v1/assemble` and the tracking API.

An allow-list (`BRIDGE_CORS_ORIGINS`), closed when empty. No credentials (cookies, HTTP auth
managed by the browser) are ever allowed; a write key travels in the body or an explicit
`Authorization` header. Preflights are answered here, cached by the browser for
`BRIDGE_CORS_MAX_AGE_SECONDS`; a refused preflight is a JSON 403 that says why. Other routes
(webhooks, admin, erasure) never answer CORS headers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import orjson
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.settings import ServiceSettings

ALLOWED_METHODS = "POST"
ALLOWED_HEADERS = frozenset({"content-type", "authorization", "content-encoding"})


class CORSMiddleware:
    def __init__(
        self, app: ASGIApp, *, settings: Callable[[], ServiceSettings], paths: Iterable[str]
    ) -> None:
        self._app = app
        self._settings = settings
        self._paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self._paths:
            await self._app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None:
            await self._app(scope, receive, send)
            return
        settings = self._settings()
        allowed = _allowed(origin, settings.cors_origin_list)
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await _preflight(send, origin, allowed, headers, settings)
            return
        if not allowed:
            await self._app(scope, receive, send)
            return
        await self._app(scope, receive, _with_origin(send, origin))


def _allowed(origin: str, origins: tuple[str, ...]) -> bool:
    return "*" in origins or origin.rstrip("/") in origins


def _with_origin(send: Send, origin: str) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            extra = [(b"access-control-allow-origin", origin.encode()), (b"vary", b"Origin")]
            message = {**message, "headers": [*message.get("headers", ()), *extra]}
        await send(message)

    return wrapped


def _refusal(origin: str, allowed: bool, headers: Headers) -> str | None:
    if not allowed:
        return f"origin {origin} is not in BRIDGE_CORS_ORIGINS"
    method = headers["access-control-request-method"].upper()
    if method != ALLOWED_METHODS:
        return f"method {method} is not allowed (only POST)"
    requested = {
        h.strip().lower()
        for h in headers.get("access-control-request-headers", "").split(",")
        if h.strip()
    }
    extra = sorted(requested - ALLOWED_HEADERS)
    if extra:
        return f"headers not allowed: {', '.join(extra)}"
    return None


async def _preflight(
    send: Send, origin: str, allowed: bool, headers: Headers, settings: ServiceSettings
) -> None:
    refusal = _refusal(origin, allowed, headers)
    if refusal is not None:
        body = orjson.dumps({"error": "CORSRequestRefused", "detail": refusal})
        status = 403
        response_headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"vary", b"Origin"),
        ]
    else:
        body, status = b"", 204
        response_headers = [
            (b"access-control-allow-origin", origin.encode()),
            (b"access-control-allow-methods", ALLOWED_METHODS.encode()),
            (b"access-control-allow-headers", ", ".join(sorted(ALLOWED_HEADERS)).encode()),
            (b"access-control-max-age", str(settings.cors_max_age_seconds).encode()),
            (b"vary", b"Origin"),
        ]
    await send({"type": "http.response.start", "status": status, "headers": response_headers})
    await send({"type": "http.response.body", "body": body})
