"""A round-robin TCP proxy on loopback, standing in for the balancer in front of replicas.

Each new client connection goes to the next backend in turn; bytes are piped both ways until
either side closes. A keep-alive HTTP connection therefore stays on one backend, as it would
behind haproxy in TCP mode: clients that want every request balanced open a connection per
request. No parsing, no retries: a backend that refuses the connection closes the client's.

In a test or a benchmark: `with RoundRobinProxy(backends) as proxy: proxy.url`, served from a
thread of its own. In a process of its own (so that it does not share a GIL with a load
generator): `python -m tests.support.proxy --port P 127.0.0.1:A 127.0.0.1:B ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import threading
from collections import Counter
from collections.abc import Sequence
from types import TracebackType
from typing import Self

Backend = tuple[str, int]
CHUNK = 65536


class RoundRobin:
    """The proxy's state: the backends, the next one, and connections handed to each."""

    def __init__(self, backends: Sequence[Backend]) -> None:
        if not backends:
            raise ValueError("a proxy needs at least one backend")
        self.backends = list(backends)
        self.connections: Counter[Backend] = Counter()
        self._next = 0

    def pick(self) -> Backend:
        backend = self.backends[self._next % len(self.backends)]
        self._next += 1
        self.connections[backend] += 1
        return backend

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = self.pick()
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(host, port)
        except OSError:
            await _close(writer)
            return
        _no_delay(writer)
        _no_delay(upstream_writer)
        await asyncio.gather(
            _pipe(reader, upstream_writer), _pipe(upstream_reader, writer), return_exceptions=True
        )


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        await _close(writer)


async def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError, RuntimeError):
        writer.close()
        await writer.wait_closed()


def _no_delay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class RoundRobinProxy:
    """The proxy on 127.0.0.1 (`port` 0: a free one), in a background thread; a context
    manager."""

    def __init__(self, backends: Sequence[Backend], port: int = 0) -> None:
        self.balancer = RoundRobin(backends)
        self._port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connections(self) -> dict[Backend, int]:
        """Connections handed to each backend so far."""
        return {backend: self.balancer.connections[backend] for backend in self.balancer.backends}

    def start(self) -> Self:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self._server = started.result(timeout=10)
        return self

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self.balancer.handle, "127.0.0.1", self._port)

    def stop(self) -> None:
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
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


def parse_backend(text: str) -> Backend:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


async def _serve(backends: Sequence[Backend], port: int) -> None:
    server = await asyncio.start_server(RoundRobin(backends).handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="round-robin TCP proxy on 127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("backends", nargs="+", help="host:port of each backend")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve([parse_backend(b) for b in args.backends], args.port))


if __name__ == "__main__":
    main()
