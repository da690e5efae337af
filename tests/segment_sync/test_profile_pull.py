"""Profile API pulls on a profile miss, through the running app and the loopback fake."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from core.redis import Keys
from segment_sync.profile_api.pulls import ProfilePuller, pull_marker_key
from segment_sync.profiles.store import RedisProfileStore, visitor_key
from tests.fakes.segment_profiles import FakeProfileApi
from tests.segment_sync.support import PREFIX, app_settings, assemble_home, segment_settings
from tests.support.app import running_app
from tests.support.redis_server import RedisServer

Bridge = tuple[FastAPI, httpx.AsyncClient, ProfilePuller]
KEYS = Keys(PREFIX)


@pytest.fixture
def fake() -> Iterator[FakeProfileApi]:
    with FakeProfileApi() as api:
        api.put_profile(
            "u-cart",
            traits={"plan": "pro", "personas": ["runner"]},
            audiences={"cart_abandoners": True, "video_lovers": False},
        )
        yield api


@pytest.fixture
async def bridge(
    redis: Redis, redis_server: RedisServer, fake: FakeProfileApi
) -> AsyncIterator[Bridge]:
    segment = segment_settings(
        profile_space_id=fake.space_id,
        profile_token=fake.token,
        profile_url=fake.url,
        profile_max_attempts=3,
        profile_backoff_seconds=0.01,
    )
    async with running_app(app_settings(redis_server.url, segment)) as (app, client):
        puller = app.state.services.webhooks.profiles
        assert isinstance(puller, ProfilePuller)
        yield app, client, puller


async def test_first_assemble_is_baseline_a_later_one_personalized(
    bridge: Bridge, fake: FakeProfileApi, redis: Redis
) -> None:
    _, client, puller = bridge
    first = await assemble_home(client, id="u-cart")
    assert first["home.hero"]["source"] == "baseline"

    await puller.wait_idle()
    later = await assemble_home(client, id="u-cart")
    assert later["home.hero"]["variant"] == "hero-cart"
    assert later["home.tip"]["variant"] == "tip-runner", "pulled traits work in conditions"
    assert len(fake.requests) == 2
    assert await redis.get(pull_marker_key(KEYS, "u-cart")) == b"written"


async def test_assemble_does_not_wait_for_the_pull(bridge: Bridge, fake: FakeProfileApi) -> None:
    _, client, puller = bridge
    fake.hold()
    try:
        answer = await assemble_home(client, id="u-cart")
        assert answer["home.hero"]["source"] == "baseline"
        assert puller.busy, "the pull is still parked in the fake"
    finally:
        fake.release()
    await puller.wait_idle()
    assert (await assemble_home(client, id="u-cart"))["home.hero"]["variant"] == "hero-cart"


async def test_concurrent_misses_pull_once(bridge: Bridge, fake: FakeProfileApi) -> None:
    _, client, puller = bridge
    fake.hold()
    try:
        for _ in range(5):
            await assemble_home(client, id="u-cart")
    finally:
        fake.release()
    await puller.wait_idle()
    assert len(fake.requests) == 2  # one pull: all traits, then the audience class


async def test_429_with_retry_after_is_retried(
    bridge: Bridge, fake: FakeProfileApi, redis: Redis
) -> None:
    _, client, puller = bridge
    fake.fail_next(429, headers={"Retry-After": "0"})
    await assemble_home(client, id="u-cart")
    await puller.wait_idle()
    assert [r.authorized for r in fake.requests] == [True, True, True]
    assert (await assemble_home(client, id="u-cart"))["home.hero"]["variant"] == "hero-cart"


async def test_5xx_exhausted_is_counted_and_writes_no_profile(
    bridge: Bridge, fake: FakeProfileApi, redis: Redis
) -> None:
    _, client, puller = bridge
    failed_before = pulls("failed")
    fake.fail_next(503, count=10)
    await assemble_home(client, id="u-cart")
    await puller.wait_idle()
    assert len(fake.requests) == 3
    assert pulls("failed") == failed_before + 1
    metrics = (await client.get("/metrics")).text
    assert 'microbridge_segment_profile_pulls_total{outcome="failed"}' in metrics
    assert await nothing_pulled(redis, "u-cart")
    assert await redis.get(pull_marker_key(KEYS, "u-cart")) == b"failed"
    assert (await assemble_home(client, id="u-cart"))["home.hero"]["source"] == "baseline"
    await puller.wait_idle()
    assert len(fake.requests) == 3, "a failed pull is not repeated at once"


async def test_404_writes_nothing_and_is_not_repeated(
    bridge: Bridge, fake: FakeProfileApi, redis: Redis
) -> None:
    _, client, puller = bridge
    for _ in range(3):
        await assemble_home(client, id="u-unknown")
        await puller.wait_idle()
    assert len(fake.requests) == 1
    assert fake.requests[0].external_id == "user_id:u-unknown"
    assert await nothing_pulled(redis, "u-unknown")
    assert await redis.get(pull_marker_key(KEYS, "u-unknown")) == b"absent"


async def test_anonymous_visitors_are_never_pulled(bridge: Bridge, fake: FakeProfileApi) -> None:
    _, client, puller = bridge
    await assemble_home(client, anonymousId="a-only")
    await puller.wait_idle()
    assert fake.requests == []


async def test_known_profiles_are_not_pulled(
    bridge: Bridge, fake: FakeProfileApi, redis: Redis
) -> None:
    app, client, puller = bridge
    profiles = app.state.services.assembly.service.profiles
    assert profiles.on_miss == puller.on_miss
    await redis.hset(visitor_key(KEYS, user_id="u-known"), "audiences", b'["video_lovers"]')
    answer = await assemble_home(client, id="u-known")
    await puller.wait_idle()
    assert answer["home.hero"]["variant"] == "hero-video"
    assert fake.requests == []


async def test_another_replica_pulling_is_not_duplicated(
    bridge: Bridge, fake: FakeProfileApi, redis: Redis
) -> None:
    _, client, puller = bridge
    await redis.set(pull_marker_key(KEYS, "u-cart"), b"pulling", ex=60)
    await assemble_home(client, id="u-cart")
    await puller.wait_idle()
    assert fake.requests == []


async def test_no_profile_settings_no_hook(redis: Redis, redis_server: RedisServer) -> None:
    async with running_app(app_settings(redis_server.url, segment_settings())) as (app, _):
        assert app.state.services.webhooks.profiles is None
        assert app.state.services.assembly.service.profiles.on_miss is None


def pulls(outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "microbridge_segment_profile_pulls_total", {"outcome": outcome}
    )
    return value or 0.0


async def nothing_pulled(redis: Redis, user_id: str) -> bool:
    """No traits or audiences for the user (assemble's own exposure events may make a profile)."""
    profile = await RedisProfileStore(redis, KEYS).read(user_id, None)
    return profile is None or (not profile.traits and not profile.audiences)
