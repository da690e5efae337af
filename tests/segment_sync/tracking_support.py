"""Helpers for the tracking API and event pipeline tests: settings, a real HTTP server for the
real `segment-analytics-python` client, and reading what the pipeline applied."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr
from redis.asyncio import Redis
from segment.analytics import Client

from app import AppSettings
from core.redis import Keys
from segment_sync.config import SegmentSettings
from segment_sync.profiles.store import RedisProfileStore
from tests.segment_sync.support import PREFIX
from tests.support.app import make_settings, running_app
from tests.support.redis_server import free_port
from tests.support.waiting import eventually

WRITE_KEY = "wk-test-7f3a91"
OTHER_KEY = "wk-test-rotated-22c0"
KEYS = Keys(PREFIX)
ADMIN_TOKEN = "admin-token-for-tests-0123456789"

# Short timings so that reclaiming a dead consumer's entries takes a fraction of a second.
FAST = {
    "consumer_block_ms": 50,
    "claim_idle_ms": 300,
    "claim_interval_seconds": 0.1,
}


def events_settings(**values: Any) -> SegmentSettings:
    values.setdefault("write_keys", f"{WRITE_KEY},{OTHER_KEY}")
    return SegmentSettings(_env_file=None, **{**FAST, **values})


def bridge_settings(redis_url: str | None, segment: SegmentSettings) -> AppSettings:
    settings = make_settings(redis_url, prefix=PREFIX)
    service = settings.service.model_copy(update={"admin_token": SecretStr(ADMIN_TOKEN)})
    return dataclasses.replace(settings, segment=segment, service=service)


@asynccontextmanager
async def bridge(
    redis_url: str | None, **values: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with running_app(bridge_settings(redis_url, events_settings(**values))) as running:
        yield running


@asynccontextmanager
async def http_server(app: FastAPI) -> AsyncIterator[str]:
    """Serve a running app (its lifespan already entered) on a loopback port; the base URL."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="off", log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def segment_client(host: str, *, gzip: bool = False, write_key: str = WRITE_KEY) -> Client:
    """The real client, in its default asynchronous mode (batches of up to 100)."""
    errors: list[Any] = []
    client = Client(
        write_key,
        host=host,
        gzip=gzip,
        max_queue_size=100_000,
        on_error=lambda error, batch: errors.append(error),
    )
    client.errors = errors
    return client


async def flush(client: Client) -> None:
    """`client.flush()` blocks until the server answered; run it off the event loop."""
    await asyncio.to_thread(client.flush)
    assert not client.errors, client.errors


async def profile(
    redis: Redis, *, user_id: str | None = None, anonymous_id: str | None = None
) -> Any:
    return await RedisProfileStore(redis, KEYS).read(user_id, anonymous_id)


async def stream_length(redis: Redis) -> int:
    length: int = await redis.xlen(KEYS.events_stream)
    return length


async def pending(redis: Redis, group: str = "profiles") -> int:
    summary = await redis.xpending(KEYS.events_stream, group)
    count: int = summary["pending"]
    return count


async def drained(redis: Redis, *, within: float = 20.0) -> None:
    """Every appended entry was delivered and acknowledged."""

    async def state() -> tuple[int, int]:
        groups = await redis.xinfo_groups(KEYS.events_stream)
        lag = groups[0].get("lag") if groups else None
        return (lag if lag is not None else 1), await pending(redis)

    await eventually(state, lambda s: s == (0, 0), within=within)


async def assemble(client: httpx.AsyncClient, **user: str) -> dict[str, dict[str, Any]]:
    response = await client.post("/v1/assemble", json={"template": "home", "user": user})
    assert response.status_code == 200, response.text
    return {slot["slot"]: slot for slot in response.json()["slots"]}


def views(
    count: int, *, visitors: int = 25, products: int = 4, tag: str = "v"
) -> list[dict[str, Any]]:
    """`count` "Product Viewed" tracks spread over visitors and products, unique messageIds."""
    return [
        {
            "type": "track",
            "event": "Product Viewed",
            "anonymousId": f"{tag}{i % visitors}",
            "messageId": f"{tag}-m{i}",
            "properties": {"product_id": f"p{i % products}", "duration": 1},
        }
        for i in range(count)
    ]
