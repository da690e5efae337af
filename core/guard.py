"""The service's one ASGI middleware: what every request passes through, in one call.

In order: CORS for the browser routes (`core.cors`: preflights answered here, an allowed
origin's headers added to the answer), the body limit (`core.limits`: a declared length over
it is a 413 at once, an undeclared one is counted as it streams), the body deadline (408, and
the connection closed), the JSON 500 with a request id for an error no handler took
(`core.errors`), and the latency histogram (`core.timing`) around all of it.

They were five stacked middlewares, four of them wrapping `send` (py-spy put the layers at ~5 %
of a page view's CPU; folding them measured within the benchmark's noise, 3,596 against 3,672
assembles/s, medians of six interleaved runs). What it buys is one place to read: one `Reply`
wraps `send` once and carries what the rules decided about the answer (its extra headers,
whether to close, the status it had), and the order of the rules is the order of the code.

`direct` routes (method and exact path) are served from here, past the framework's exception
middleware, exit stack and router (five calls deep, ~4 % of a page view's CPU, profiled): the
hot path only. Their errors are rendered here as the app's handlers would
(`core.errors.known_error`); any other path, or the same path under a root path, takes the
framework's way, where the same route is registered too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core import cors
from core.errors import answer_unexpected, known_error
from core.limits import NO_BODY, BodyLimits, content_length, guarded_body, reject_too_large
from core.settings import ServiceSettings
from core.timing import LatencyRecorder

_CLOSE = (b"connection", b"close")


class Reply:
    """The one wrapper of `send`: adds the decided headers to the answer's start and
    remembers its status and whether it started."""

    __slots__ = ("_send", "close", "headers", "route", "started", "status")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status = 500  # what the request counts as when the app fails before answering
        self.started = False
        self.headers: list[tuple[bytes, bytes]] = []
        self.close = False
        self.route: str | None = None  # the metrics label, when the guard routed the request

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            self.status = message["status"]
            extra = [*self.headers, _CLOSE] if self.close else self.headers
            if extra:
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
        await self._send(message)

    def closing(self) -> None:
        self.close = True


class HttpGuard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Callable[[], ServiceSettings],
        limits: Mapping[str, int],
        cors_paths: Iterable[str],
        direct: Mapping[tuple[str, str], ASGIApp] | None = None,
    ) -> None:
        self._app = app
        self._direct = dict(direct or {})
        self._settings = settings
        self._limits = BodyLimits(settings, limits)
        self._cors_paths = frozenset(cors_paths)
        self._latency = LatencyRecorder()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        reply = Reply(send)
        try:
            await self._guarded(scope, receive, reply)
        finally:
            elapsed = time.perf_counter() - started
            self._latency.observe(scope, reply.status, elapsed, reply.route)

    async def _guarded(self, scope: Scope, receive: Receive, reply: Reply) -> None:
        if scope["path"] in self._cors_paths and await self._cors(scope, reply):
            return
        if scope["method"] not in NO_BODY:
            limit = self._limits.limit_for(scope["path"])
            declared = content_length(scope)
            if declared is not None and declared > limit:
                await reject_too_large(reply.send, limit)
                return
            receive = guarded_body(
                scope,
                receive,
                seconds=self._settings().body_timeout_seconds,
                limit=limit if declared is None else None,  # the server stops at a declared one
                on_timeout=reply.closing,
            )
        app = self._direct.get((scope["method"], scope["path"]))
        if app is not None:
            reply.route = scope["path"]
        try:
            await (app or self._app)(scope, receive, reply.send)
        except Exception as exc:
            if app is not None and await _answer_known(exc, scope, receive, reply):
                return
            if not await answer_unexpected(scope, receive, reply.send, started=reply.started):
                raise

    async def _cors(self, scope: Scope, reply: Reply) -> bool:
        """Apply CORS; True when it answered the request (a preflight)."""
        origin = cors.origin_of(scope)
        if origin is None:
            return False
        settings = self._settings()
        allowed = cors.allowed(origin, settings.cors_origin_list)
        if cors.is_preflight(scope):
            await cors.preflight(reply.send, origin, allowed, scope, settings)
            return True
        if allowed:
            reply.headers = cors.response_headers(origin)
        return False


async def _answer_known(exc: Exception, scope: Scope, receive: Receive, reply: Reply) -> bool:
    """Answer a direct route's error as the app's handlers would; False when it is not one
    they render, or the answer had already started."""
    response = None if reply.started else known_error(exc)
    if response is None:
        return False
    await response(scope, receive, reply.send)
    return True
