"""Two real service processes share one Redis: a webhook on one refreshes the other.

Each replica is `python cli.py serve` on its own port, on the demo space, with the test
Redis and a key prefix of its own for this test. The subprocesses are always stopped.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import uuid
from asyncio.subprocess import Process
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

import httpx
from redis.asyncio import Redis

from tests.support.redis_server import RedisServer, free_port
from tests.webhooks.test_contentful_webhook import (
    SECRET,
    UNPUBLISH,
    VISITOR,
    cma_entry,
    cma_tombstone,
    deliver,
)

ROOT = Path(__file__).resolve().parents[2]
START_SECONDS = 30.0
CONVERGE_SECONDS = 10.0


def replica_env(redis_url: str, prefix: str) -> dict[str, str]:
    """The test process's environment without any of our settings, plus the replica's own."""
    ours = ("CONTENTFUL_", "REDIS_", "BRIDGE_", "SEGMENT_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    env.update(
        REDIS_URL=redis_url,
        REDIS_KEY_PREFIX=prefix,
        CONTENTFUL_WEBHOOK_SECRETS=SECRET,
        BRIDGE_LOG_LEVEL="warning",
    )
    return env


async def wait_ready(url: str, process: Process, log: IO[bytes]) -> None:
    deadline = time.monotonic() + START_SECONDS
    async with httpx.AsyncClient(base_url=url, timeout=1.0) as client:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                log.seek(0)
                raise AssertionError(f"replica exited: {log.read().decode(errors='replace')}")
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"replica at {url} not ready within {START_SECONDS} s")


async def stop(process: Process) -> None:
    if process.returncode is None:
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), 10)
    except TimeoutError:
        process.kill()
        await asyncio.wait_for(process.wait(), 10)


@asynccontextmanager
async def replicas(count: int, env: dict[str, str]) -> AsyncIterator[list[httpx.AsyncClient]]:
    processes: list[Process] = []
    with tempfile.TemporaryDirectory(prefix="mb-replicas-") as work:
        try:
            urls, logs = [], []
            for index in range(count):
                port = free_port()
                log = (Path(work) / f"replica-{index}.log").open("w+b")
                command = ["cli.py", "serve", "--port", str(port)]
                processes.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable, *command, cwd=ROOT, env=env, stdout=log, stderr=log
                    )
                )
                urls.append(f"http://127.0.0.1:{port}")
                logs.append(log)
            for url, process, log in zip(urls, processes, logs, strict=True):
                await wait_ready(url, process, log)
            async with _clients(urls) as clients:
                yield clients
        finally:
            for process in processes:
                await stop(process)


@asynccontextmanager
async def _clients(urls: list[str]) -> AsyncIterator[list[httpx.AsyncClient]]:
    clients = [httpx.AsyncClient(base_url=url, timeout=5.0) for url in urls]
    try:
        yield clients
    finally:
        for client in clients:
            await client.aclose()


async def hero_of(client: httpx.AsyncClient) -> dict[str, Any]:
    slot: dict[str, Any] = (await client.post("/v1/assemble", json=VISITOR)).json()["slots"][0]
    return slot


async def converge(check: Callable[[], Awaitable[bool]]) -> None:
    deadline = time.monotonic() + CONVERGE_SECONDS
    while not await check():
        assert time.monotonic() < deadline, f"not converged within {CONVERGE_SECONDS} s"
        await asyncio.sleep(0.01)


async def test_a_webhook_on_one_replica_refreshes_the_other(
    redis: Redis, redis_server: RedisServer
) -> None:
    env = replica_env(redis_server.url, f"mbrep{uuid.uuid4().hex[:8]}")
    async with replicas(2, env) as (first, second):
        published = await deliver(first, cma_entry("hero-cart", revision=3, headline="Replicated"))

        async def second_has_it() -> bool:
            return bool((await hero_of(second))["entry"]["fields"]["headline"] == "Replicated")

        await converge(second_has_it)
        unpublished = await deliver(second, cma_tombstone("hero-cart", revision=3), topic=UNPUBLISH)

        async def first_dropped_it() -> bool:
            return bool((await hero_of(first))["variant"] != "hero-cart")

        await converge(first_dropped_it)
        versions = [(await c.get("/readyz")).json()["library"]["version"] for c in (first, second)]
    assert published.json()["status"] == "applied"
    assert unpublished.json()["status"] == "applied"
    assert versions[0] == versions[1] == unpublished.json()["version"]
