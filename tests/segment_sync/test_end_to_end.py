"""Real events from the real `segment-analytics-python` client, through the service on a real
HTTP port, the stream and the consumer, to the demo space's rules on the next `/v1/assemble`."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import httpx
import pytest
import segment.analytics as analytics
from fastapi import FastAPI
from redis.asyncio import Redis

from segment_sync.profiles.store import RedisProfileStore
from tests.segment_sync.tracking_support import (
    KEYS,
    WRITE_KEY,
    assemble,
    bridge,
    drained,
    flush,
    http_server,
    profile,
    segment_client,
    stream_length,
)
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually

Served = tuple[FastAPI, httpx.AsyncClient, str]


@pytest.fixture
async def served(redis: Redis, redis_server: RedisServer) -> AsyncIterator[Served]:
    # A short abandonment window: a cart added 10 s ago is abandoned (the default is 30 min).
    async with (
        bridge(redis_server.url, cart_abandon_seconds=2.0) as (app, client),
        http_server(app) as host,
    ):
        yield app, client, host


@pytest.fixture
async def segment(served: Served) -> AsyncIterator[ModuleType]:
    """The client's module-level API, pointed at the service, as an application would use it."""
    analytics.write_key = WRITE_KEY
    analytics.host = served[2]
    analytics.max_queue_size = 100_000
    analytics.default_client = None
    yield analytics
    await asyncio.to_thread(analytics.shutdown)
    analytics.default_client = None


def ago(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


async def sent(module: ModuleType) -> None:
    await asyncio.to_thread(module.flush)


async def reco(client: httpx.AsyncClient, **user: str) -> str | None:
    variant: str | None = (await assemble(client, **user))["home.recommendation"]["variant"]
    return variant


async def settled(redis: Redis, anonymous_id: str, check: Any) -> None:
    async def stored() -> Any:
        return await profile(redis, anonymous_id=anonymous_id)

    await eventually(stored, lambda p: p is not None and check(p.signals))


# --- the seed's rules --------------------------------------------------------------------------


async def test_viewing_a_product_over_30_seconds_shows_accessories(
    served: Served, segment: ModuleType, redis: Redis
) -> None:
    _, client, _ = served
    assert await reco(client, anonymousId="a-dwell") is None
    segment.page(anonymous_id="a-dwell", name="Trail Runner X", timestamp=ago(45))
    product = {"product_id": "sku-1001", "category": "shoes"}
    segment.track(
        anonymous_id="a-dwell", event="Product Viewed", properties=product, timestamp=ago(45)
    )
    segment.page(anonymous_id="a-dwell", name="Home", timestamp=ago(4))
    segment.track(
        anonymous_id="a-glance", event="Product Viewed", properties=product, timestamp=ago(40)
    )
    segment.page(anonymous_id="a-glance", name="Home", timestamp=ago(30))
    await sent(segment)

    slots = await eventually(
        lambda: assemble(client, anonymousId="a-dwell"),
        lambda s: s["home.recommendation"]["variant"] == "reco-accessories",
    )
    assert slots["home.recommendation"]["source"] == "variant"
    await settled(redis, "a-glance", lambda s: s.get("dwell", {}).get("sku-1001") == 10.0)
    assert await reco(client, anonymousId="a-glance") is None, "10 s is not enough"


async def test_a_product_page_still_open_counts_on_the_next_assemble(
    served: Served, segment: ModuleType, redis: Redis
) -> None:
    _, client, _ = served
    segment.track(
        anonymous_id="a-open",
        event="Product Viewed",
        properties={"product_id": "sku-1001"},
        timestamp=ago(35),
    )
    await sent(segment)
    await eventually(lambda: reco(client, anonymousId="a-open"), lambda v: v == "reco-accessories")


async def test_an_abandoned_cart_gets_the_discount_until_the_order(
    served: Served, segment: ModuleType, redis: Redis
) -> None:
    _, client, _ = served
    segment.track(
        anonymous_id="a-cart",
        event="Product Added",
        properties={"product_id": "sku-2002", "category": "shoes"},
        timestamp=ago(10),
    )
    await sent(segment)
    slots = await eventually(
        lambda: assemble(client, anonymousId="a-cart"),
        lambda s: s["home.recommendation"]["variant"] == "reco-discount",
    )
    assert slots["home.hero"]["variant"] == "hero-cart"
    stored = await profile(redis, anonymous_id="a-cart")
    assert stored.signals["cart"]["products"] == ["sku-2002"]

    segment.track(anonymous_id="a-cart", event="Order Completed", properties={"order_id": "o-1"})
    await sent(segment)
    slots = await eventually(
        lambda: assemble(client, anonymousId="a-cart"),
        lambda s: s["home.recommendation"]["variant"] is None,
    )
    assert slots["home.hero"]["variant"] is None


async def test_a_fresh_cart_turns_abandoned_by_time_alone(
    served: Served, segment: ModuleType, redis: Redis
) -> None:
    _, client, _ = served
    segment.track(anonymous_id="a-fresh", event="Product Added", properties={"product_id": "x"})
    await sent(segment)
    await settled(redis, "a-fresh", lambda s: "cart" in s)
    earlier = RedisProfileStore(redis, KEYS, clock=lambda: time.time() - 60)
    later = RedisProfileStore(redis, KEYS, clock=lambda: time.time() + 3)
    assert (await earlier.read(None, "a-fresh")).signals["cartAbandoned"] is False  # type: ignore[union-attr]
    assert (await later.read(None, "a-fresh")).signals["cartAbandoned"] is True  # type: ignore[union-attr]
    await eventually(lambda: reco(client, anonymousId="a-fresh"), lambda v: v == "reco-discount")


async def test_everyone_else_gets_the_default(
    served: Served, segment: ModuleType, redis: Redis
) -> None:
    _, client, _ = served
    segment.page(anonymous_id="a-plain", name="Home", category="running")
    segment.track(anonymous_id="a-plain", event="Product Clicked", properties={"category": "trail"})
    await sent(segment)
    await settled(redis, "a-plain", lambda s: s.get("visits") == 1)
    slots = await assemble(client, anonymousId="a-plain")
    assert slots["home.recommendation"]["variant"] is None
    assert slots["home.hero"]["variant"] is None


async def test_identify_carries_anonymous_behaviour_to_the_user(
    served: Served, segment: ModuleType, redis: Redis
) -> None:
    _, client, _ = served
    product = {"product_id": "sku-1001"}
    segment.track(
        anonymous_id="a-shopper", event="Product Viewed", properties=product, timestamp=ago(50)
    )
    segment.page(anonymous_id="a-shopper", name="Home", timestamp=ago(10))
    segment.identify(user_id="u-shopper", anonymous_id="a-shopper", traits={"plan": "pro"})
    await sent(segment)
    await eventually(lambda: reco(client, id="u-shopper"), lambda v: v == "reco-accessories")
    assert await reco(client, anonymousId="a-shopper") == "reco-accessories"
    user = await profile(redis, user_id="u-shopper")
    assert user.traits == {"plan": "pro"}

    segment.alias(previous_id="u-shopper", user_id="u-shopper-2")
    await sent(segment)
    await eventually(lambda: reco(client, id="u-shopper-2"), lambda v: v == "reco-accessories")


# --- 10,000 events, each applied exactly once --------------------------------------------------


@pytest.mark.parametrize("gzip", [False, True])
async def test_ten_thousand_events_are_each_applied_once(
    served: Served, redis: Redis, gzip: bool
) -> None:
    _, _, host = served
    client = segment_client(host, gzip=gzip)
    visitors, products, count = 40, 8, 10_000
    expected: Counter[tuple[str, str]] = Counter()
    for i in range(count):
        visitor, product = f"bulk-{i % visitors}", f"p{i % products}"
        expected[(visitor, product)] += 1
        properties = {"product_id": product, "duration": 1}
        client.track(
            anonymous_id=visitor,
            event="Product Viewed",
            properties=properties,
            message_id=f"bulk-{i}",
        )
    await flush(client)
    for i in range(0, count, 25):  # a client that retried 400 of them: same messageIds again
        properties = {"product_id": f"p{i % products}", "duration": 1}
        client.track(
            anonymous_id=f"bulk-{i % visitors}",
            event="Product Viewed",
            properties=properties,
            message_id=f"bulk-{i}",
        )
    await flush(client)
    await asyncio.to_thread(client.join)

    assert await stream_length(redis) == count + count // 25
    await drained(redis, within=60)
    found: Counter[tuple[str, str]] = Counter()
    for v in range(visitors):
        stored = await profile(redis, anonymous_id=f"bulk-{v}")
        for product, seconds in stored.signals["dwell"].items():
            found[(f"bulk-{v}", product)] = int(seconds)
    assert found == expected


async def test_the_embedded_store_runs_the_pipeline_in_process() -> None:
    """No REDIS_URL: the in-process store holds the stream and the consumer runs in the service."""
    async with bridge(None) as (_, client):
        view: dict[str, Any] = {"type": "track", "event": "Product Viewed"}
        view |= {"anonymousId": "a-embedded", "properties": {"product_id": "sku-1001"}}
        view["properties"]["duration"] = 40
        response = await client.post("/v1/batch", json={"writeKey": WRITE_KEY, "batch": [view]})
        assert response.json() == {"success": True}
        await eventually(
            lambda: reco(client, anonymousId="a-embedded"), lambda v: v == "reco-accessories"
        )
