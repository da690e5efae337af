"""Consent and erasure: no signals without consent; `DELETE /v1/profiles/{userId}` erases all."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from tests.segment_sync.support import snapshot
from tests.segment_sync.tracking_support import (
    ADMIN_TOKEN,
    KEYS,
    WRITE_KEY,
    assemble,
    bridge,
    drained,
    profile,
)
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually

Bridge = tuple[FastAPI, httpx.AsyncClient]
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def api(redis: Redis, redis_server: RedisServer) -> AsyncIterator[Bridge]:
    async with bridge(redis_server.url) as running:
        yield running


async def send(client: httpx.AsyncClient, *messages: dict[str, Any]) -> None:
    body = orjson.dumps({"writeKey": WRITE_KEY, "batch": list(messages)})
    response = await client.post("/v1/batch", content=body)
    assert response.json() == {"success": True}, response.text


def viewed(seconds: float, **ids: Any) -> dict[str, Any]:
    properties = {"product_id": "sku-1001", "duration": seconds}
    return {"type": "track", "event": "Product Viewed", "properties": properties, **ids}


# --- consent -----------------------------------------------------------------------------------


async def test_no_consent_trait_stores_no_signals_and_serves_baselines(
    api: Bridge, redis: Redis
) -> None:
    _, client = api
    await send(
        client,
        {"type": "identify", "userId": "u-private", "traits": {"consent": False}},
        viewed(45, userId="u-private"),
        {"type": "track", "event": "Product Added", "userId": "u-private"},
    )
    await drained(redis)
    stored = await profile(redis, user_id="u-private")
    assert stored.signals == {}
    assert stored.consent is False
    for slot in (await assemble(client, id="u-private")).values():
        assert slot["source"] == "baseline"
        assert slot["reason"] == "no consent for personalization"


async def test_consent_category_in_the_context(api: Bridge, redis: Redis) -> None:
    _, client = api
    refused = {"consent": {"categoryPreferences": {"Personalization": False, "Analytics": True}}}
    await send(client, viewed(45, anonymousId="a-refused", context=refused))
    await drained(redis)
    assert (await profile(redis, anonymous_id="a-refused")).signals == {}
    granted = {"consent": {"categoryPreferences": {"Personalization": True}}}
    await send(client, viewed(45, anonymousId="a-refused", context=granted))
    await eventually(
        lambda: assemble(client, anonymousId="a-refused"),
        lambda s: s["home.recommendation"]["variant"] == "reco-accessories",
    )


# --- erasure -----------------------------------------------------------------------------------


async def linked_profile(client: httpx.AsyncClient, redis: Redis) -> None:
    await send(
        client,
        viewed(45, anonymousId="a-gone"),
        {"type": "identify", "userId": "u-gone", "anonymousId": "a-gone", "traits": {"x": 1}},
        {"type": "alias", "previousId": "u-gone-old", "userId": "u-gone"},
    )
    await drained(redis)
    await redis.hset(KEYS.decisions("u:u-gone"), "a:test", b"1")  # another package's counters


@pytest.mark.parametrize(
    ("headers", "status", "error"),
    [
        ({}, 401, "Unauthorized"),
        ({"authorization": "Bearer wrong"}, 401, "Unauthorized"),
        ({"authorization": f"Basic {ADMIN_TOKEN}"}, 401, "Unauthorized"),
    ],
)
async def test_erasure_needs_the_admin_token(
    api: Bridge, redis: Redis, headers: dict[str, str], status: int, error: str
) -> None:
    _, client = api
    await linked_profile(client, redis)
    before = await snapshot(redis)
    response = await client.delete("/v1/profiles/u-gone", headers=headers)
    assert response.status_code == status
    assert response.json()["error"] == error
    assert await snapshot(redis) == before


async def test_erasure_removes_the_profile_links_and_counters(api: Bridge, redis: Redis) -> None:
    _, client = api
    await linked_profile(client, redis)
    await send(client, viewed(5, anonymousId="a-bystander"))
    await drained(redis)

    response = await client.delete("/v1/profiles/u-gone", headers=ADMIN)
    assert response.status_code == 204
    assert response.content == b""
    for vid in ("u:u-gone", "a:a-gone", "u:u-gone-old", "a:u-gone-old"):
        pattern = KEYS.visitor_pattern(vid)
        assert [k async for k in redis.scan_iter(match=pattern)] == [
            KEYS.profile_erased(vid).encode()
        ]
    assert await profile(redis, user_id="u-gone") is None
    assert await profile(redis, anonymous_id="a-gone") is None
    assert await profile(redis, anonymous_id="a-bystander") is not None
    again = await client.delete("/v1/profiles/u-gone", headers=ADMIN)
    assert again.status_code == 204, "erasing twice is fine"


async def test_events_accepted_before_the_erasure_are_never_applied(
    redis: Redis, redis_server: RedisServer
) -> None:
    async with bridge(redis_server.url, consumer_enabled=False) as (_, client):
        await send(client, viewed(45, userId="u-late"), viewed(45, anonymousId="a-late"))
        await send(client, {"type": "identify", "userId": "u-late", "anonymousId": "a-late"})
        assert (await client.delete("/v1/profiles/u-late", headers=ADMIN)).status_code == 204
    async with bridge(redis_server.url) as (_, client):
        await drained(redis)
        assert await profile(redis, user_id="u-late") is None
        await send(client, viewed(3, userId="u-late"))  # the visitor comes back afterwards
        await drained(redis)
        assert (await profile(redis, user_id="u-late")).signals["dwell"] == {"sku-1001": 3.0}


async def test_erasure_is_disabled_without_an_admin_token(
    redis: Redis, redis_server: RedisServer
) -> None:
    async with bridge(redis_server.url) as (app, client):
        app.state.services.admin.token = None
        response = await client.delete("/v1/profiles/u-1", headers=ADMIN)
        assert response.status_code == 404
        assert response.json()["error"] == "AdminDisabled"
