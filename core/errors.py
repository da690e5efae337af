"""One error base with an HTTP status, and the handlers that render every error alike."""

from __future__ import annotations

import re
import uuid
import weakref
from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.responses import OrjsonResponse

log = structlog.get_logger()


class BridgeError(Exception):
    """Base of every error we raise on purpose; rendered as `{"error", "detail"}`."""

    status_code: int = 500

    def __init__(self, detail: str, *, status_code: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if status_code is not None:
            self.status_code = status_code

    @property
    def name(self) -> str:
        return type(self).__name__


class InvalidRequest(BridgeError):
    status_code = 422


class PayloadTooLarge(BridgeError):
    status_code = 413


class NotFound(BridgeError):
    status_code = 404


class Unauthorized(BridgeError):
    status_code = 401


class ServiceUnavailable(BridgeError):
    status_code = 503
    retry_after: int | None = None
    """Seconds for the `Retry-After` header of the answer; None: no header."""


class StoreUnavailable(ServiceUnavailable):
    """Redis is down, hung or refusing: the operation did not happen; try again shortly."""

    retry_after = 2


def json_object(body: bytes, error: type[BridgeError]) -> dict[str, Any]:
    """Parse a request body that must be a JSON object; anything else raises `error`."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise error(f"the body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise error("the body must be a JSON object")
    return document


def error_response(status: int, error: str, detail: str) -> OrjsonResponse:
    return OrjsonResponse({"error": error, "detail": detail}, status_code=status)


def describe_validation(errors: list[Any]) -> str:
    """One readable line per pydantic error: `body.user.id: Input should be a valid string`."""
    parts = []
    for err in errors:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


KNOWN_ERRORS = (
    BridgeError,
    RedisConnectionError,
    RedisTimeoutError,
    RequestValidationError,
    ValidationError,
)


def known_error(exc: Exception) -> OrjsonResponse | None:
    """The answer to an error we know how to render without a request (`BridgeError`, an
    untranslated Redis failure, a pydantic validation error); None for any other."""
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        detail = f"the store is unavailable ({type(exc).__name__}); retry shortly"
        exc = StoreUnavailable(detail)  # never a text 500
    if isinstance(exc, RequestValidationError | ValidationError):
        return error_response(422, "InvalidRequest", describe_validation(list(exc.errors())))
    if not isinstance(exc, BridgeError):
        return None
    if exc.status_code >= 500:
        log.warning("http.error", error=exc.name, detail=exc.detail)
    response = error_response(exc.status_code, exc.name, exc.detail)
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


async def _known_error(_: Request, exc: Exception) -> OrjsonResponse:
    response = known_error(exc)
    assert response is not None  # registered only for the kinds `known_error` renders
    return response


_BODY_NOT_JSON = "There was an error parsing the body"  # FastAPI's 400 for a body it cannot decode


async def _http_error(request: Request, exc: Exception) -> OrjsonResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == _BODY_NOT_JSON:
        return error_response(422, "InvalidRequest", "body: not a valid JSON document")
    names = {404: "NotFound", 405: "MethodNotAllowed", 401: "Unauthorized"}
    response = error_response(
        exc.status_code, names.get(exc.status_code, "HTTPError"), str(exc.detail)
    )
    response.headers.update(exc.headers or {})
    if exc.status_code == 405:
        response.headers["Allow"] = allowed_methods(request, response.headers.get("Allow", ""))
    return response


def allowed_methods(request: Request, computed: str) -> str:
    """Every method the API documents at this path, with the router's own `Allow`
    (`computed`), which names only the first route that matched the path."""
    methods = {m.strip() for m in computed.split(",") if m.strip()}
    for pattern, documented in _documented_methods(request.app):
        if pattern.fullmatch(request.url.path):
            methods.update(documented)
    return ", ".join(sorted(methods))


_DOCUMENTED: weakref.WeakKeyDictionary[FastAPI, list[tuple[re.Pattern[str], set[str]]]] = (
    weakref.WeakKeyDictionary()
)


def _documented_methods(app: FastAPI) -> list[tuple[re.Pattern[str], set[str]]]:
    """(path pattern, methods) of every path in the app's OpenAPI schema, built once."""
    cached = _DOCUMENTED.get(app)
    if cached is None:
        cached = [
            (
                re.compile(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path))),
                {m.upper() for m in ops},
            )
            for path, ops in app.openapi().get("paths", {}).items()
        ]
        _DOCUMENTED[app] = cached
    return cached


def install_error_handlers(app: FastAPI, *, catch_all: bool = True) -> None:
    """Every error answers JSON `{"error", "detail"}`. `catch_all`: add the middleware that
    answers unexpected errors (the service's `core.guard.HttpGuard` does it itself); call it
    before adding other middleware, so they see the 500 answer."""
    for kind in KNOWN_ERRORS:
        app.add_exception_handler(kind, _known_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    if catch_all:
        app.add_middleware(UnexpectedErrors)


class UnexpectedErrors:
    """Turns an exception no handler took into a JSON 500 carrying a request id.

    The id is the request's `X-Request-Id` when it sent a usable one, else a new one; it is
    in the answer (header and detail) and in the `http.unexpected_error` log line with the
    traceback, so a report can be matched to its log. Nothing else about the error leaks.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            if not await answer_unexpected(scope, receive, send, started=started):
                raise


async def answer_unexpected(scope: Scope, receive: Receive, send: Send, *, started: bool) -> bool:
    """Called in an `except` block: log the error being handled with a request id and answer
    a JSON 500 carrying it; False when the answer had already started (too late: the caller
    re-raises, the client sees the connection end)."""
    request_id = request_id_of(scope)
    structlog.get_logger().exception(  # a fresh logger: the config of the moment
        "http.unexpected_error",
        request_id=request_id,
        method=scope.get("method"),
        path=scope.get("path"),
    )
    if started:
        return False
    detail = f"an unexpected error occurred; request id {request_id}"
    response = error_response(500, "InternalError", detail)
    response.headers[REQUEST_ID_HEADER] = request_id
    await response(scope, receive, send)
    return True


REQUEST_ID_HEADER = "X-Request-Id"


def request_id_of(scope: Scope) -> str:
    """The caller's `X-Request-Id` when it is short and plain, else a new random id."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text: str = value.decode("latin-1")
            if 0 < len(text) <= 128 and all(c.isalnum() or c in "-_.:" for c in text):
                return text
    return uuid.uuid4().hex
