"""The service against a CDA-compatible server: serve its content, resume, stay fresh."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from tests.fakes.contentful import FakeContentful
from tests.support.app import make_settings, running_app
from tests.support.demo import demo_items, with_fields
from tests.support.redis_server import RedisServer

SPACE = "microbridge-demo"
VISITOR = {"template": "home", "context": {"audiences": ["cart_abandoners"]}}


@pytest.fixture
def contentful() -> Iterator[FakeContentful]:
    with FakeContentful(space_id=SPACE, pages=[list(demo_items().values())]) as fake:
        yield fake


def settings_for(fake: FakeContentful, redis_url: str, **extra: Any) -> Any:
    return make_settings(
        redis_url,
        space_id=fake.space_id,
        access_token=fake.token,
        cda_url=fake.url,
        **extra,
    )


async def hero(client: httpx.AsyncClient) -> dict[str, Any]:
    answer = (await client.post("/v1/assemble", json=VISITOR)).json()
    slot: dict[str, Any] = answer["slots"][0]
    return slot


async def test_serves_content_from_a_cda_compatible_server(
    contentful: FakeContentful, redis: Redis, redis_server: RedisServer
) -> None:
    async with running_app(settings_for(contentful, redis_server.url)) as (_, client):
        slot = await hero(client)
        ready = (await client.get("/readyz")).json()
    assert slot["variant"] == "hero-cart"
    assert ready["source"] == "contentful"
    assert ready["status"] == "ready"


async def test_restart_resumes_from_the_token_without_a_full_resync(
    contentful: FakeContentful, redis: Redis, redis_server: RedisServer
) -> None:
    settings = settings_for(contentful, redis_server.url)
    async with running_app(settings):
        pass
    initial_calls = len(contentful.requests)
    async with running_app(settings) as (_, client):
        assert (await hero(client))["variant"] == "hero-cart"
        for _ in range(200):
            later = [q for p, q in contentful.requests[initial_calls:] if p.endswith("/sync")]
            if later:
                break
            await asyncio.sleep(0.025)
    assert later, "the restarted service ran its delta sync"
    assert all("initial" not in q and "sync_token" in q for q in later)


async def test_periodic_delta_sync_brings_published_changes(
    contentful: FakeContentful, redis: Redis, redis_server: RedisServer
) -> None:
    settings = settings_for(contentful, redis_server.url, sync_interval_seconds=0.2)
    async with running_app(settings) as (_, client):
        contentful.publish(with_fields("hero-cart", headline="Fresh from Contentful"))
        for _ in range(100):
            if (await hero(client))["entry"]["fields"]["headline"] == "Fresh from Contentful":
                break
            await asyncio.sleep(0.05)
        assert (await hero(client))["entry"]["fields"]["headline"] == "Fresh from Contentful"


async def test_broken_entries_are_reported_in_readyz_and_the_rest_served(
    contentful: FakeContentful, redis: Redis, redis_server: RedisServer
) -> None:
    contentful.publish(with_fields("var-hero-cart", conditions={"$or": {"not": "a list"}}))
    async with running_app(settings_for(contentful, redis_server.url)) as (_, client):
        ready = (await client.get("/readyz")).json()
        slot = await hero(client)
    issues = {i["id"]: i["problem"] for i in ready["library"]["issues"]}
    assert set(issues) == {"var-hero-cart", "slot-home-hero"}
    assert "'conditions' is not a valid condition" in issues["var-hero-cart"]
    assert "variant var-hero-cart is missing or invalid" in issues["slot-home-hero"]
    assert ready["status"] == "ready"
    assert slot["source"] == "baseline"


async def test_contentful_outage_at_start_still_serves_stored_content(
    contentful: FakeContentful, redis: Redis, redis_server: RedisServer
) -> None:
    settings = settings_for(contentful, redis_server.url, max_attempts=1)
    async with running_app(settings):
        pass
    contentful.fail_next(503, count=50)
    async with running_app(settings) as (_, client):
        slot = await hero(client)
        ready = (await client.get("/readyz")).json()
    assert slot["variant"] == "hero-cart"
    assert ready["status"] == "ready"
