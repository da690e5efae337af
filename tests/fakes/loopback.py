"""The lifecycle shared by our loopback fakes: a threaded HTTP server on 127.0.0.1, port 0."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True, slots=True)
class Response:
    """A fake's answer to one request, which `JsonHandler` writes as JSON."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


class FakeServer(ThreadingHTTPServer):
    """Carries the fake that its handler answers for."""

    daemon_threads = True
    fake: Any

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet when a client gave up (timeout) before a delayed answer was written."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class LoopbackFake:
    """Start and stop a fake's server in a background thread; a context manager.

    Subclasses name their server and handler classes and may override `_release` to wake
    requests they hold.
    """

    _server: FakeServer | None = None
    _thread: threading.Thread | None = None

    def _classes(self) -> tuple[type[FakeServer], type[BaseHTTPRequestHandler]]:
        raise NotImplementedError

    def start(self) -> Self:
        server_class, handler = self._classes()
        server = server_class(("127.0.0.1", 0), handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def _release(self) -> None:
        """Let held requests go before the server shuts down."""

    def stop(self) -> None:
        self._release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, `http://127.0.0.1:PORT`."""
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"


class JsonHandler(BaseHTTPRequestHandler):
    """Answers GETs with what `server.fake.handle(path, query, headers)` returns, as JSON.

    The fake's answer has `status`, `body` and `headers`; `base_headers` adds the provider's own.
    """

    server: FakeServer

    def base_headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json"}

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        response = self.server.fake.handle(parts.path, query, dict(self.headers.items()))
        body = json.dumps(response.body).encode()
        self.send_response(response.status)
        for name, value in {**self.base_headers(), **response.headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default per-request line on stderr."""
