"""An admin kill switch flipped on one replica takes effect on another: two real processes.

Both run `python cli.py serve` on the demo space, sharing the test Redis under their own key
prefix. Propagation time is measured in bench/decisions.py, not asserted here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from tests.support.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "replica-token"
ADMIN = {"authorization": f"Bearer {TOKEN}", "x-admin-user": "oncall"}
CART = {"template": "home", "context": {"audiences": ["cart_abandoners"]}}
SWITCHED = "kill switch: slot home.hero (admin)"


@contextlib.contextmanager
def replica(redis_url: str, log: Path) -> Iterator[str]:
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CONTENTFUL_", "REDIS_", "BRIDGE_", "DECISIONS_"))
    }
    env.update(
        REDIS_URL=redis_url,
        REDIS_KEY_PREFIX="mbreplicas",
        BRIDGE_ADMIN_TOKEN=TOKEN,
        BRIDGE_LOG_LEVEL="warning",
        PYTHONUNBUFFERED="1",
    )
    command = [sys.executable, "cli.py", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


async def wait_ready(client: httpx.AsyncClient, base: str, log: Path) -> None:
    for _ in range(600):
        with contextlib.suppress(httpx.TransportError):
            if (await client.get(f"{base}/readyz")).status_code == 200:
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{base} not ready; output:\n{_tail(log)}")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:]


async def hero(client: httpx.AsyncClient, base: str) -> dict[str, Any]:
    response = await client.post(f"{base}/v1/assemble", json=CART)
    assert response.status_code == 200, response.text
    slot: dict[str, Any] = response.json()["slots"][0]
    return slot


async def until(client: httpx.AsyncClient, base: str, reason: str) -> dict[str, Any]:
    """Poll a replica until home.hero answers with `reason` (bounded: 10 s)."""
    slot: dict[str, Any] = {}
    for _ in range(1000):
        slot = await hero(client, base)
        if slot["reason"] == reason:
            return slot
        await asyncio.sleep(0.01)
    raise AssertionError(f"{base} still answers {slot}")


@pytest.fixture
async def replicas(
    redis: Redis, redis_server: RedisServer, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, str, str]]:
    logs = (tmp_path / "a.log", tmp_path / "b.log")
    with replica(redis_server.url, logs[0]) as a, replica(redis_server.url, logs[1]) as b:
        async with httpx.AsyncClient(timeout=5) as client:
            await wait_ready(client, a, logs[0])
            await wait_ready(client, b, logs[1])
            yield client, a, b


async def test_a_switch_set_on_one_replica_applies_on_the_other(
    replicas: tuple[httpx.AsyncClient, str, str], redis: Redis
) -> None:
    client, a, b = replicas
    assert (await hero(client, a))["variant"] == "hero-cart"
    assert (await hero(client, b))["variant"] == "hero-cart"
    response = await client.post(
        f"{a}/admin/kill-switches/slot/home.hero", json={"reason": "bad image"}, headers=ADMIN
    )
    assert response.status_code == 200, response.text
    assert (await hero(client, a))["reason"] == SWITCHED, "the replica that was asked, at once"
    slot = await until(client, b, SWITCHED)
    assert slot["source"] == "baseline"
    listed = (await client.get(f"{b}/admin/kill-switches", headers=ADMIN)).json()
    assert [(s["key"], s["by"], s["reason"]) for s in listed["switches"]] == [
        ("home.hero", "oncall", "bad image")
    ]
    assert await redis.hexists("mbreplicas:decisions:kill_switches", "slot:home.hero")
    cleared = await client.request(
        "DELETE", f"{b}/admin/kill-switches/slot/home.hero", json={"reason": "fixed"}, headers=ADMIN
    )
    assert cleared.status_code == 200, cleared.text
    back = await until(client, a, "audience cart-abandoners")
    assert back["variant"] == "hero-cart"
