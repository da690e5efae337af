"""The page always gets content: store outage → degraded answer; no library → fallback."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from tests.support.app import make_settings, running_app
from tests.support.redis_server import RedisServer, free_port

HOME = {"template": "home", "user": {"id": "u-1"}, "context": {"audiences": ["cart_abandoners"]}}


async def test_store_outage_keeps_serving_the_snapshot_degraded() -> None:
    own = RedisServer()
    own.start()
    try:
        async with running_app(make_settings(own.url)) as (_, client):
            assert (await client.post("/v1/assemble", json=HOME)).json()["degraded"] is False
            own.stop()
            response = await client.post("/v1/assemble", json=HOME)
            ready = await client.get("/readyz")
    finally:
        own.stop()
    answer = response.json()
    assert response.status_code == 200
    assert answer["degraded"] is True
    hero = answer["slots"][0]
    assert hero["variant"] == "hero-cart", "request audiences still personalize"
    assert ready.status_code == 503
    assert ready.json()["store"]["reachable"] is False


async def test_no_library_serves_the_bundled_fallback() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    async with running_app(make_settings(dead), ready=False) as (_, client):
        response = await client.post("/v1/assemble", json=HOME)
        ready = await client.get("/readyz")
    answer = response.json()
    assert response.status_code == 200
    assert answer["degraded"] is True
    assert [s["slot"] for s in answer["slots"]][:2] == ["home.hero", "home.cta"]
    assert {s["source"] for s in answer["slots"]} == {"fallback"}
    assert answer["slots"][0]["entry"]["id"] == "hero-default"
    assert ready.status_code == 503
    assert ready.json()["library"] is None


async def test_store_recovery_clears_degraded_after_the_breaker_closes() -> None:
    own = RedisServer()
    own.start()
    try:
        async with running_app(make_settings(own.url)) as (_, client):
            own.stop()
            assert (await client.post("/v1/assemble", json=HOME)).json()["degraded"] is True
            own.start()
            await asyncio.sleep(1.1)  # the breaker skips the store for one second
            answer = (await client.post("/v1/assemble", json=HOME)).json()
    finally:
        own.stop()
    assert answer["degraded"] is False
    assert answer["slots"][0]["variant"] == "hero-cart"


async def test_metrics_count_fallbacks_and_sources(redis: Redis, redis_server: RedisServer) -> None:
    async with running_app(make_settings(redis_server.url)) as (_, client):
        await client.post("/v1/assemble", json=HOME)
        text = (await client.get("/metrics")).text
    assert 'microbridge_assemble_slots_total{source="variant"}' in text
    assert "microbridge_request_seconds_bucket" in text
    assert "microbridge_content_version" in text
    assert "microbridge_sync_seconds" in text


async def test_healthz_is_always_ok() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    async with running_app(make_settings(dead), ready=False) as (_, client):
        response = await client.get("/healthz")
    assert response.json() == {"status": "ok"}
