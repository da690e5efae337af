"""A private Redis Cluster for the test session: 3 masters and 3 replicas on loopback ports.

Started lazily (the `redis_cluster` session fixture) by the tests that run against a cluster.
Nodes append-only (`--appendonly yes`), with a short node timeout so that a replica takes over
a killed master within a few seconds (the failover test).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.redis_server import free_port

NODE_TIMEOUT_MS = 1000


class RedisCluster:
    """Start, stop and break (kill -9 a master) a throwaway cluster."""

    def __init__(self, masters: int = 3, replicas: int = 1) -> None:
        binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if binary is None or cli is None:
            raise RuntimeError("redis-server/redis-cli are not installed: run `make test`")
        self.binary, self.cli = binary, cli
        self.size = masters * (1 + replicas)
        self.ports: list[int] = []
        self.bus_ports: dict[int, int] = {}
        self.replicas = replicas
        self.dir = Path(tempfile.mkdtemp(prefix="mb-cluster-"))
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """A seed node's URL: the client discovers the rest (`REDIS_CLUSTER=true`)."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> None:
        """Start the nodes and join them; on fresh ports again if a port was taken meanwhile."""
        for attempt in range(3):
            self._pick_ports()
            try:
                self._start_once()
                return
            except (subprocess.CalledProcessError, RuntimeError):
                self._stop_nodes()
                if attempt == 2:
                    raise

    def _pick_ports(self) -> None:
        # The cluster bus port is given too: the default (port + 10000) may not exist.
        picked: set[int] = set()
        while len(picked) < 2 * self.size:
            picked.add(free_port())
        ordered = sorted(picked)
        self.ports = ordered[: self.size]
        self.bus_ports = dict(zip(self.ports, ordered[self.size :], strict=True))

    def _start_once(self) -> None:
        for port in self.ports:
            self._start_node(port)
        for port in self.ports:
            _wait_port(port)
        subprocess.run(
            [
                self.cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        self.wait_ok()

    def _start_node(self, port: int) -> None:
        folder = self.dir / str(port)
        folder.mkdir(exist_ok=True)
        self.processes[port] = subprocess.Popen(
            [
                self.binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(folder / "nodes.conf"),
                "--cluster-port",
                str(self.bus_ports[port]),
                "--cluster-node-timeout",
                str(NODE_TIMEOUT_MS),
                "--appendonly",
                "yes",
                "--save",
                "",
                "--dir",
                str(folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def command(self, port: int, *args: str) -> str:
        result = subprocess.run(
            [self.cli, "-p", str(port), *args],
            capture_output=True,
            check=False,
            text=True,
            timeout=10,
        )
        return result.stdout

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every live node reports `cluster_state:ok` and sees every slot covered."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(
                "cluster_state:ok" in self.command(port, "cluster", "info")
                for port in self.live_ports
            ):
                return
            time.sleep(0.1)
        raise RuntimeError("the test cluster did not reach cluster_state:ok")

    def wait_failover(self, masters: int = 3, timeout: float = 30.0) -> None:
        """Until a replica of a killed master has taken its slots over: `masters` live masters,
        and every live node reports `cluster_state:ok`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.masters()) >= masters:
                self.wait_ok(max(0.1, deadline - time.monotonic()))
                return
            time.sleep(0.05)
        raise RuntimeError("no replica took over the killed master")

    @property
    def live_ports(self) -> list[int]:
        return [port for port, p in self.processes.items() if p.poll() is None]

    def masters(self) -> list[int]:
        """Ports of the live masters (by `CLUSTER NODES` of a live node)."""
        nodes = self.command(self.live_ports[0], "cluster", "nodes")
        found = []
        for line in nodes.splitlines():
            parts = line.split()
            if len(parts) > 2 and "master" in parts[2] and "fail" not in parts[2]:
                found.append(int(parts[1].split("@")[0].rsplit(":", 1)[1]))
        return [port for port in found if port in self.live_ports]

    def kill(self, port: int) -> None:
        """`kill -9` one node: no shutdown, no final fsync."""
        process = self.processes[port]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def restart(self, port: int) -> None:
        """Bring a killed node back (it rejoins, as a replica of whoever took over)."""
        self._start_node(port)
        _wait_port(port)

    def stop(self) -> None:
        self._stop_nodes()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _stop_nodes(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        self.processes.clear()


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"redis-server did not start on port {port}")
