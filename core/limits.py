"""Request body limits, enforced before a body is read into memory, and a body deadline.

A declared `Content-Length` over the limit is answered 413 at once; a chunked body is counted
as it streams and stopped at the limit. Limits are per path prefix (longest prefix wins); the
default is `BRIDGE_MAX_BODY_BYTES`.

`BodyTimeoutMiddleware` bounds the time a request body may take to arrive
(`BRIDGE_BODY_TIMEOUT_SECONDS`, counted from the end of the headers): a slow client gets 408
and its connection is closed. Neither h11 nor httptools in uvicorn has such a deadline (their
only timeout is keep-alive between requests), so it lives here and works under any server.
An upload the client abandons is logged as one `http.request_aborted` line, not a traceback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import orjson
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import BridgeError, PayloadTooLarge
from core.settings import ServiceSettings

log = structlog.get_logger()

_NO_BODY = frozenset({"GET", "HEAD", "OPTIONS"})


class RequestTimeout(BridgeError):
    status_code = 408


class RequestAborted(BridgeError):
    """The client went away mid-body: one `http.request_aborted` line, no traceback (the
    answer goes nowhere)."""

    status_code = 400


class BodyLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Callable[[], ServiceSettings],
        limits: Mapping[str, int],
    ) -> None:
        self._app = app
        self._settings = settings
        self._limits = sorted(limits.items(), key=lambda kv: len(kv[0]), reverse=True)

    def limit_for(self, path: str) -> int:
        for prefix, limit in self._limits:
            if path.startswith(prefix):
                return limit
        return self._settings().max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _NO_BODY:
            await self._app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None:
            if declared > limit:
                await _reject(send, limit)
                return
            await self._app(scope, receive, send)  # the server stops at Content-Length
            return
        await self._app(scope, _counting(receive, limit), send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _counting(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise PayloadTooLarge(f"request body exceeds {limit} bytes")
        return message

    return wrapped


async def _reject(send: Send, limit: int) -> None:
    body = orjson.dumps(
        {"error": "PayloadTooLarge", "detail": f"request body exceeds {limit} bytes"}
    )
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyTimeoutMiddleware:
    def __init__(self, app: ASGIApp, *, settings: Callable[[], ServiceSettings]) -> None:
        self._app = app
        self._settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _NO_BODY:
            await self._app(scope, receive, send)
            return
        seconds = self._settings().body_timeout_seconds
        deadline = asyncio.get_running_loop().time() + seconds
        timed_out = body_done = False

        async def timed_receive() -> Message:
            nonlocal timed_out, body_done
            if body_done:  # later reads only wait for a disconnect
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                timed_out = True
                raise RequestTimeout(
                    f"the request body did not arrive within {seconds:g} s"
                ) from None
            if message["type"] == "http.disconnect":
                log.info("http.request_aborted", method=scope["method"], path=scope["path"])
                raise RequestAborted("the client closed the connection before its body arrived")
            body_done = not message.get("more_body", False)
            return message

        async def closing_send(message: Message) -> None:
            if timed_out and message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), (b"connection", b"close")]
                message = {**message, "headers": headers}
            await send(message)

        await self._app(scope, timed_receive, closing_send)
