"""Request body limits, enforced before a body is read into memory, and a body deadline
(applied to every request by `core.guard.HttpGuard`).

A declared `Content-Length` over the limit is answered 413 at once; a chunked body is counted
as it streams and stopped at the limit. Limits are per path prefix (longest prefix wins); the
default is `BRIDGE_MAX_BODY_BYTES`.

The deadline bounds the time a request body may take to arrive
(`BRIDGE_BODY_TIMEOUT_SECONDS`, counted from the end of the headers, kept by
`core.deadlines.COARSE`, so up to a quarter second late): a slow client gets 408 and its
connection is closed. Neither h11 nor httptools in uvicorn has such a deadline (their
only timeout is keep-alive between requests), so it lives here and works under any server.
An upload the client abandons is logged as one `http.request_aborted` line, not a traceback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import orjson
import structlog
from starlette.types import Message, Receive, Scope, Send

from core.deadlines import COARSE
from core.errors import BridgeError, PayloadTooLarge
from core.settings import ServiceSettings

log = structlog.get_logger()


class RequestTimeout(BridgeError):
    status_code = 408


class RequestAborted(BridgeError):
    """The client went away mid-body: one `http.request_aborted` line, no traceback (the
    answer goes nowhere)."""

    status_code = 400


NO_BODY = frozenset({"GET", "HEAD", "OPTIONS"})


class BodyLimits:
    """The body limit of each path: the longest matching prefix's, else the default."""

    def __init__(self, settings: Callable[[], ServiceSettings], limits: Mapping[str, int]) -> None:
        self._settings = settings
        self._limits = sorted(limits.items(), key=lambda kv: len(kv[0]), reverse=True)

    def limit_for(self, path: str) -> int:
        for prefix, limit in self._limits:
            if path.startswith(prefix):
                return limit
        return self._settings().max_body_bytes


def content_length(scope: Scope) -> int | None:
    """The declared `Content-Length`; None when absent or unreadable (a chunked body)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def reject_too_large(send: Send, limit: int) -> None:
    """413 at once, for a declared length over the limit (the body is never read)."""
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


def guarded_body(
    scope: Scope,
    receive: Receive,
    *,
    seconds: float,
    limit: int | None,
    on_timeout: Callable[[], None],
) -> Receive:
    """`receive` with the body deadline (`seconds` from now; `on_timeout` is told, then
    `RequestTimeout` raised) and, for a body of undeclared length, the size `limit` counted as
    it streams (`PayloadTooLarge`). A client that goes away mid-body is `RequestAborted`."""
    deadline = asyncio.get_running_loop().time() + seconds
    body_done = False
    seen = 0

    async def wrapped() -> Message:
        nonlocal body_done, seen
        if body_done:  # later reads only wait for a disconnect
            return await receive()
        task = asyncio.current_task()
        assert task is not None
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        watch = COARSE.watch(deadline, expire)  # a sweep, not a timer: see core.deadlines
        try:
            message = await receive()
        except asyncio.CancelledError:
            if not expired or task.uncancel() > 0:  # someone else's cancel
                raise
            on_timeout()
            raise RequestTimeout(f"the request body did not arrive within {seconds:g} s") from None
        finally:
            watch.forget()
        if message["type"] == "http.disconnect":
            log.info("http.request_aborted", method=scope["method"], path=scope["path"])
            raise RequestAborted("the client closed the connection before its body arrived")
        if limit is not None:
            seen += len(message.get("body", b""))
            if seen > limit:
                raise PayloadTooLarge(f"request body exceeds {limit} bytes")
        body_done = not message.get("more_body", False)
        return message

    return wrapped
