"""HTTP server limits that uvicorn lacks, and the uvicorn options built from the settings.

`BridgeHttpProtocol` is uvicorn's httptools protocol plus:
- a deadline for a request's head: the request line and headers must arrive within
  `BRIDGE_HEADER_TIMEOUT_SECONDS` of the connection opening (or of the first byte of a next
  request on a kept-alive connection), else 408 and close; slow-header clients (slowloris)
  cannot hold a connection forever;
- a connection cap: beyond `BRIDGE_MAX_CONNECTIONS` open connections a new one is answered
  503 at once and closed, so file descriptors never run out (at the `ulimit -n` wall the
  server could accept nothing at all, not even `/healthz`);
- JSON `{"error", "detail"}` bodies for the answers the server writes itself (400, 408, 503).

Slow bodies are bounded by `core.guard.HttpGuard` (its body deadline), under any server.
`uvicorn app:app --http core.server:BridgeHttpProtocol` gets the same protection as `cli.py serve`.
"""

from __future__ import annotations

import asyncio
import resource
from typing import Any

import orjson
import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from core.deadlines import COARSE, Watch
from core.metrics import CONNECTIONS_REFUSED
from core.settings import ServiceSettings

log = structlog.get_logger()

# File descriptors kept free of client connections: Redis pool, listening socket, log files.
FD_RESERVE = 128
# How long a refused connection is kept half-closed so its client reads the 503.
LINGER_SECONDS = 1.0

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 503: b"Service Unavailable"}


def connection_cap(configured: int) -> int:
    """`configured`, or (0) the soft `RLIMIT_NOFILE` less a reserve, never above it."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = max(16, soft - FD_RESERVE) if soft != resource.RLIM_INFINITY else 1 << 20
    return min(configured, ceiling) if configured else ceiling


def raw_response(status: int, error: str, detail: str, *extra: tuple[bytes, bytes]) -> bytes:
    """A complete HTTP/1.1 answer with a JSON error body that closes the connection."""
    body = orjson.dumps({"error": error, "detail": detail})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *extra,
    ]
    head = b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])
    return head + b"".join(n + b": " + v + b"\r\n" for n, v in headers) + b"\r\n" + body


class BridgeHttpProtocol(HttpToolsProtocol):
    header_timeout: float = 0.0  # 0: from the environment's settings on first use
    max_connections: int = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not type(self).header_timeout:
            _configure_from_environment(type(self))
        self._head_watch: Watch | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._refusing = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._refusing = len(self.connections) > self.max_connections
        if self._refusing:
            self._refuse(transport)
            return
        _LimitState.accepted(len(self.connections))
        self._arm_head_timer()

    def _refuse(self, transport: asyncio.Transport) -> None:
        """503 at once, then a short lingering close: the client reads the answer, not a reset.

        (Closing a socket with the client's request unread sends a reset, which can destroy
        the 503 before the client reads it.) Far over the cap, the close is immediate.
        """
        _LimitState.refused(self.max_connections)
        detail = "the server is at its connection limit; retry"
        transport.write(raw_response(503, "TooManyConnections", detail, (b"retry-after", b"1")))
        if len(self.connections) > self.max_connections + FD_RESERVE // 2:
            transport.close()
            return
        if transport.can_write_eof():
            transport.write_eof()
        self._linger = self.loop.call_later(LINGER_SECONDS, transport.close)

    def data_received(self, data: bytes) -> None:
        if not self._refusing:  # a refused connection's request is read and dropped
            super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        self.transport.write(raw_response(400, "InvalidHTTPRequest", msg))
        self.transport.close()

    def _arm_head_timer(self) -> None:
        """The head deadline is swept (`core.deadlines`), not a timer per request: up to a
        quarter second late, and no libuv timer armed and cancelled on every request."""
        if self._head_watch is None:
            deadline = self.loop.time() + self.header_timeout
            self._head_watch = COARSE.watch(deadline, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_watch is not None:
            self._head_watch.forget()
            self._head_watch = None

    def _head_timed_out(self) -> None:
        self._head_watch = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            detail = f"the request head did not arrive within {self.header_timeout:g} s"
            self.transport.write(raw_response(408, "RequestTimeout", detail))
        self.transport.close()


def _configure_from_environment(cls: type[BridgeHttpProtocol]) -> None:
    settings = ServiceSettings()
    cls.header_timeout = settings.header_timeout_seconds
    cls.max_connections = connection_cap(settings.max_connections)


def protocol_for(settings: ServiceSettings) -> type[BridgeHttpProtocol]:
    """A protocol class bound to these settings (what `cli.py serve` gives uvicorn)."""
    return type(
        "BridgeHttpProtocol",
        (BridgeHttpProtocol,),
        {
            "header_timeout": settings.header_timeout_seconds,
            "max_connections": connection_cap(settings.max_connections),
        },
    )


def uvicorn_options(settings: ServiceSettings) -> dict[str, Any]:
    """Keyword arguments of `uvicorn.run` / `uvicorn.Config` for these settings."""
    return {
        "host": settings.host,
        "port": settings.port,
        "http": protocol_for(settings),
        "loop": "uvloop",
        "timeout_keep_alive": settings.keep_alive_seconds,
        "timeout_graceful_shutdown": settings.graceful_shutdown_seconds,
        "backlog": settings.backlog,
        "access_log": False,
        "log_config": None,  # core.logging formats uvicorn's loggers too
    }


class _LimitState:
    """Whether the cap is being hit: logged once per change of state, counted always."""

    at_limit = False

    @classmethod
    def refused(cls, cap: int) -> None:
        CONNECTIONS_REFUSED.inc()
        if not cls.at_limit:
            cls.at_limit = True
            log.warning("http.connection_limit_reached", max_connections=cap)

    @classmethod
    def accepted(cls, open_connections: int) -> None:
        if cls.at_limit:
            cls.at_limit = False
            log.info("http.connection_limit_cleared", open_connections=open_connections)
