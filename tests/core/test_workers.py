"""`cli.py serve --workers N`: N processes share the port over the shared store."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import httpx

from tests.core.server_process import ROOT, serve
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually

PAGE = {"template": "home", "user": {"anonymousId": "w-1"}}


def workers_of(pid: int) -> set[int]:
    """The spawned worker processes under uvicorn's supervisor."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    found = set()
    for child in map(int, children):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"spawn_main" in cmdline:  # not multiprocessing's resource tracker
            found.add(child)
    return found


async def _workers(pid: int) -> set[int]:
    return workers_of(pid)


def answers(url: str, count: int) -> list[int]:
    statuses = []
    for _ in range(count):  # a new connection each time: the kernel spreads them
        with httpx.Client(base_url=url, timeout=5) as client:
            statuses.append(client.post("/v1/assemble", json=PAGE).status_code)
    return statuses


async def test_workers_share_the_port_and_a_killed_one_is_replaced(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    command = [sys.executable, str(ROOT / "cli.py"), "serve", "--workers", "2"]
    env = {
        "REDIS_URL": redis_server.url.replace("/0", "/5"),
        "BRIDGE_SNAPSHOT_PATH": str(tmp_path / "lib"),
    }
    server = serve(tmp_path, command=command, env=env)
    try:
        workers = await eventually(lambda: _workers(server.proc.pid), lambda w: len(w) == 2)
        assert answers(server.url, 20) == [200] * 20

        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        replaced = await eventually(
            lambda: _workers(server.proc.pid),
            lambda w: len(w) == 2 and victim not in w,
            within=30,
        )
        assert victim not in replaced
        server.wait_healthy()
        assert answers(server.url, 20) == [200] * 20
    finally:
        server.stop()
