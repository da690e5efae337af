"""Erasure holds (issue 10, item 5): after `DELETE /v1/profiles/{id}`, no event of that user
whose own time is before the erasure is applied again while the tombstone lasts, including a
re-send with the original messageIds, as the real `segment-analytics-python` client's retry or
an offline queue does. Events of the visitor after the erasure build a new profile."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from tests.segment_sync.tracking_support import (
    ADMIN_TOKEN,
    KEYS,
    bridge,
    drained,
    flush,
    http_server,
    profile,
    segment_client,
)
from tests.support.redis_server import RedisServer

Served = tuple[FastAPI, httpx.AsyncClient, str]
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def served(redis: Redis, redis_server: RedisServer) -> AsyncIterator[Served]:
    async with bridge(redis_server.url) as (app, client), http_server(app) as host:
        yield app, client, host


def queue(when: datetime) -> list[dict[str, object]]:
    """What a client recorded before the erasure (its offline queue), with fixed messageIds."""
    return [
        {
            "user_id": "u-erased",
            "anonymous_id": "a-erased",
            "event": "Product Viewed",
            "properties": {"product_id": "sku-1001", "duration": 45},
            "timestamp": when,
            "message_id": "offline-1",
        },
        {
            "user_id": "u-erased",
            "event": "Product Added",
            "properties": {"product_id": "sku-1001"},
            "timestamp": when + timedelta(seconds=1),
            "message_id": "offline-2",
        },
    ]


async def send(host: str, messages: list[dict[str, object]]) -> None:
    client = segment_client(host)
    for message in messages:
        client.track(**message)
    await flush(client)


async def test_a_resend_of_events_from_before_the_erasure_is_never_applied(
    served: Served, redis: Redis
) -> None:
    _, api, host = served
    recorded = queue(datetime.now(UTC) - timedelta(minutes=5))
    await send(host, recorded)
    await drained(redis)
    assert (await profile(redis, user_id="u-erased")).signals["dwell"] == {"sku-1001": 45.0}

    assert (await api.delete("/v1/profiles/u-erased", headers=ADMIN)).status_code == 204
    await send(host, recorded)  # the client's retry / offline queue: same ids, same times
    await send(host, [{**m, "message_id": f"{m['message_id']}-b"} for m in recorded])
    await drained(redis)
    assert await profile(redis, user_id="u-erased") is None
    assert await profile(redis, anonymous_id="a-erased") is None
    assert await redis.exists(KEYS.profile_erased("u:u-erased"))

    later = {**recorded[0], "timestamp": datetime.now(UTC) + timedelta(seconds=1)}
    properties = {"product_id": "p2", "duration": 3}
    await send(host, [{**later, "message_id": "after-1", "properties": properties}])
    await drained(redis)
    stored = await profile(redis, user_id="u-erased")
    assert stored.signals["dwell"] == {"p2": 3.0}, "a new profile, with nothing from before"
    assert "cart" not in stored.signals
