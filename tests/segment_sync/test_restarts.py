"""Nothing lost: every accepted event takes effect exactly once across a service restart,
Redis connections killed under load, and `cli.py worker` processes killed with SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
from redis.asyncio import Redis

from tests.segment_sync.support import PREFIX
from tests.segment_sync.tracking_support import KEYS, WRITE_KEY, bridge, drained, profile, views
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]


async def send(client: httpx.AsyncClient, events: list[dict[str, Any]], size: int = 250) -> None:
    """POST in batches; a 5xx is retried with the same messages, as Segment's clients do."""
    for start in range(0, len(events), size):
        body = orjson.dumps({"writeKey": WRITE_KEY, "batch": events[start : start + size]})
        for _ in range(20):
            response = await client.post("/v1/batch", content=body)
            if response.status_code < 500:
                break
            await asyncio.sleep(0.05)
        assert response.json() == {"success": True}, response.text


async def exactly_once(redis: Redis, events: list[dict[str, Any]]) -> None:
    wanted = Counter((e["anonymousId"], e["properties"]["product_id"]) for e in events)
    found: Counter[tuple[str, str]] = Counter()
    for visitor in {e["anonymousId"] for e in events}:
        stored = await profile(redis, anonymous_id=visitor)
        for product, seconds in stored.signals["dwell"].items():
            found[(visitor, product)] = int(seconds)
    assert found == wanted


async def test_restarting_the_service_loses_nothing(
    redis: Redis, redis_server: RedisServer
) -> None:
    events = views(3000, visitors=30, products=5, tag="restart")
    async with bridge(redis_server.url, consumer_batch_size=10) as (_, client):
        await send(client, events[:2000])
    (group,) = await redis.xinfo_groups(KEYS.events_stream)
    assert group["lag"] + group["pending"] > 0, "stopped mid-stream (small batches)"
    async with bridge(redis_server.url) as (_, client):
        await send(client, events[2000:])
        await drained(redis)
    await exactly_once(redis, events)


async def test_killing_redis_connections_under_load_loses_nothing(
    redis: Redis, redis_server: RedisServer
) -> None:
    events = views(3000, visitors=30, products=5, tag="killed")
    async with bridge(redis_server.url) as (_, client):
        for start in range(0, len(events), 500):
            await send(client, events[start : start + 500])
            await redis.client_kill_filter(_type="normal", skipme=True)
        await drained(redis)
    await exactly_once(redis, events)


@contextmanager
def worker(redis_url: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "SEGMENT_"))}
    env.update(
        REDIS_URL=redis_url,
        REDIS_KEY_PREFIX=PREFIX,
        SEGMENT_CONSUMER_BLOCK_MS="50",
        SEGMENT_CLAIM_IDLE_MS="300",
        SEGMENT_CLAIM_INTERVAL_SECONDS="0.1",
        BRIDGE_LOG_LEVEL="warning",
        PYTHONUNBUFFERED="1",
    )
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "cli.py", "worker"], cwd=ROOT, env=env, stdout=sink, stderr=sink
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)


async def test_worker_processes_killed_mid_stream_lose_nothing(
    redis: Redis, redis_server: RedisServer, tmp_path: Path
) -> None:
    events = views(6000, visitors=30, products=5, tag="worker")
    log = tmp_path / "workers.log"
    async with bridge(redis_server.url, consumer_enabled=False) as (_, client):
        await send(client, events)
        with worker(redis_server.url, log) as doomed:

            async def read() -> int:
                groups = await redis.xinfo_groups(KEYS.events_stream)
                count: int = groups[0]["entries-read"] or 0
                return count

            await eventually(read, lambda n: n > 0, within=30)
            doomed.send_signal(signal.SIGKILL)  # mid-stream, with entries pending
            doomed.wait(timeout=10)
        with worker(redis_server.url, log) as first, worker(redis_server.url, log) as second:
            await drained(redis, within=60)
            assert first.poll() is None, log.read_text()[-2000:]
            assert second.poll() is None, log.read_text()[-2000:]

            async def consumers() -> list[dict[str, Any]]:
                found: list[dict[str, Any]] = await redis.xinfo_consumers(
                    KEYS.events_stream, "profiles"
                )
                return found

            # The killed worker's pending entries were claimed by a new one. (Whether the
            # second new worker shows in the group depends on whether it read before the first
            # drained the stream: Redis lists a consumer once it has read.)
            await eventually(
                consumers,
                lambda cs: len(cs) >= 2 and all(c["pending"] == 0 for c in cs),
                within=90,
            )
    await exactly_once(redis, events)
