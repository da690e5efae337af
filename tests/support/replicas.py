"""Service replicas as an operator runs them: N `cli.py serve` processes behind a balancer.

Each replica is its own process on its own loopback port, with its own working directory
(its log is `<work>/replica-<i>/server.log`); all share one Redis through `env`. The
round-robin proxy of tests/support/proxy.py stands in front of them.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.core.server_process import ROOT, ServerProcess, clean_env, free_port
from tests.support.proxy import RoundRobinProxy

START_SECONDS = 60.0


def start_replica(work: Path, env: Mapping[str, str], port: int | None = None) -> ServerProcess:
    """`cli.py serve` on `port` (a free one by default), not waited for."""
    port = port or free_port()
    work.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(ROOT / "cli.py"), "serve", "--port", str(port)]
    environment = clean_env(BRIDGE_PORT=str(port), PYTHONUNBUFFERED="1", **env)
    return ServerProcess(command, environment, port, work)


def wait_ready(server: ServerProcess, timeout: float = START_SECONDS) -> None:
    """Until `/readyz` answers 200 (a library is installed); fails with the replica's log."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                raise AssertionError(f"replica exited:\n{server.output()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{server.url}/readyz").status_code == 200:
                    return
            time.sleep(0.05)
    raise AssertionError(f"{server.url} not ready:\n{server.output()[-3000:]}")


@dataclass
class Fleet:
    """Replicas and the proxy in front of them; `restart(i)` brings one back on its port."""

    work: Path
    env: dict[str, str]
    servers: list[ServerProcess] = field(default_factory=list)
    proxy: RoundRobinProxy | None = None

    @property
    def url(self) -> str:
        """The balancer's address."""
        if self.proxy is None:
            raise RuntimeError("the fleet is not started")
        return self.proxy.url

    @property
    def urls(self) -> list[str]:
        """Each replica's own address."""
        return [server.url for server in self.servers]

    def start(self, count: int) -> None:
        self.servers = [start_replica(self.work / f"replica-{i}", self.env) for i in range(count)]
        for server in self.servers:
            wait_ready(server)
        self.proxy = RoundRobinProxy([("127.0.0.1", s.port) for s in self.servers]).start()

    def connections(self) -> list[int]:
        """Connections the proxy handed to each replica so far."""
        if self.proxy is None:
            return [0] * len(self.servers)
        handed = self.proxy.connections()
        return [handed[("127.0.0.1", server.port)] for server in self.servers]

    def stop_one(self, index: int) -> None:
        """Stop replica `index` (SIGTERM: a clean shutdown); the proxy keeps its place."""
        self.servers[index].stop()

    def start_again(self, index: int) -> None:
        """Start a stopped replica again, on its port and in its directory; ready when done."""
        old = self.servers[index]
        self.servers[index] = start_replica(old.log.parent, self.env, old.port)
        wait_ready(self.servers[index])

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        for server in self.servers:
            server.stop()


@contextlib.contextmanager
def fleet(work: Path, env: Mapping[str, str], count: int = 3) -> Iterator[Fleet]:
    """`count` replicas sharing `env` (REDIS_URL, prefix, secrets...) behind a round-robin
    proxy; always stopped after."""
    replicas = Fleet(work, dict(env))
    try:
        replicas.start(count)
        yield replicas
    finally:
        replicas.stop()
