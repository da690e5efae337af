"""Store faults for tests: a redis-server of the test's own, hung (SIGSTOP) or resumed.

Never the shared server: only a private one may be stopped or paused.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.redis_server import RedisServer


@contextmanager
def private_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        if server.process is not None:
            server.process.send_signal(signal.SIGCONT)
        server.stop()


def pause(server: RedisServer) -> None:
    """The server hangs: connections stay open, nothing is answered."""
    assert server.process is not None
    server.process.send_signal(signal.SIGSTOP)


def resume(server: RedisServer) -> None:
    assert server.process is not None
    server.process.send_signal(signal.SIGCONT)
