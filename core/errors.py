"""One error base with an HTTP status, and the handlers that render every error alike."""

from __future__ import annotations

from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

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


async def _bridge_error(_: Request, exc: Exception) -> OrjsonResponse:
    assert isinstance(exc, BridgeError)
    if exc.status_code >= 500:
        log.warning("http.error", error=exc.name, detail=exc.detail)
    return error_response(exc.status_code, exc.name, exc.detail)


async def _validation_error(_: Request, exc: Exception) -> OrjsonResponse:
    assert isinstance(exc, RequestValidationError | ValidationError)
    return error_response(422, "InvalidRequest", describe_validation(list(exc.errors())))


async def _http_error(_: Request, exc: Exception) -> OrjsonResponse:
    assert isinstance(exc, StarletteHTTPException)
    names = {404: "NotFound", 405: "MethodNotAllowed", 401: "Unauthorized"}
    response = error_response(
        exc.status_code, names.get(exc.status_code, "HTTPError"), str(exc.detail)
    )
    response.headers.update(exc.headers or {})  # 405 carries `Allow`
    return response


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(BridgeError, _bridge_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
