"""CORS for the browser-facing routes: `/v1/assemble` and the tracking API (applied by
`core.guard.HttpGuard`).

An allow-list (`BRIDGE_CORS_ORIGINS`), closed when empty. No credentials (cookies, HTTP auth
managed by the browser) are ever allowed; a write key travels in the body or an explicit
`Authorization` header. Preflights are answered here, cached by the browser for
`BRIDGE_CORS_MAX_AGE_SECONDS`; a refused preflight is a JSON 403 that says why. Other routes
(webhooks, admin, erasure) never answer CORS headers.
"""

from __future__ import annotations

import orjson
from starlette.datastructures import Headers
from starlette.types import Scope, Send

from core.settings import ServiceSettings

ALLOWED_METHODS = "POST"
ALLOWED_HEADERS = frozenset({"content-type", "authorization", "content-encoding"})


def origin_of(scope: Scope) -> str | None:
    """The request's `Origin` header (browsers send one on cross-origin requests)."""
    for name, value in scope["headers"]:
        if name == b"origin":
            text: str = value.decode("latin-1")
            return text
    return None


def is_preflight(scope: Scope) -> bool:
    return scope["method"] == "OPTIONS" and any(
        name == b"access-control-request-method" for name, _ in scope["headers"]
    )


def response_headers(origin: str) -> list[tuple[bytes, bytes]]:
    """What an allowed origin's answer carries."""
    return [(b"access-control-allow-origin", origin.encode()), (b"vary", b"Origin")]


def allowed(origin: str, origins: tuple[str, ...]) -> bool:
    return "*" in origins or origin.rstrip("/") in origins


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


async def preflight(
    send: Send, origin: str, allowed: bool, scope: Scope, settings: ServiceSettings
) -> None:
    """Answer a preflight: 204 with what is allowed, or a JSON 403 that says why not."""
    refusal = _refusal(origin, allowed, Headers(scope=scope))
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
