"""Decision state stays bounded: a visitor's hash lives as long as what it remembers, anonymous
visitors' sticky state less long than known users', and a page view with nothing to remember
writes nothing."""

from __future__ import annotations

import uuid
from typing import Any

from redis.asyncio import Redis

from tests.assembly.support import assemble, decision_app, settle
from tests.support.redis_server import RedisServer

DAY = 86400
SETTINGS: dict[str, Any] = {"state_ttl_days": 180, "anonymous_state_ttl_days": 30}


def anonymous() -> dict[str, str]:
    return {"anonymousId": uuid.uuid4().hex}


async def lifetimes(redis: Redis) -> dict[str, int]:
    """Seconds left of every visitor decision-state hash, by visitor id."""
    found = {}
    async for key in redis.scan_iter(match="mbtest:{v:*}:decisions"):
        name = key.decode().split("{v:", 1)[1].split("}", 1)[0]
        found[name] = await redis.ttl(key)
    return found


async def test_each_hash_lives_as_long_as_what_it_remembers(
    redis: Redis, redis_server: RedisServer
) -> None:
    session_only, daily, sticky_anon = anonymous(), anonymous(), anonymous()
    async with decision_app(redis_server.url, **SETTINGS) as (app, client):
        await assemble(client, template=None, slots=["home.tip"], user=session_only, sessionId="s1")
        await assemble(client, template=None, slots=["home.banner"], user=daily)
        await assemble(client, user=sticky_anon)  # the demo's experiment assigns everyone
        await assemble(client, user={"id": "known-1", **anonymous()})
        await settle(app)
    ttl = await lifetimes(redis)
    assert 0 < ttl[f"a:{session_only['anonymousId']}"] <= DAY, "session marks: a day"
    assert DAY < ttl[f"a:{daily['anonymousId']}"] <= 2 * DAY, "a daily cap count: two days"
    assert 29 * DAY < ttl[f"a:{sticky_anon['anonymousId']}"] <= 30 * DAY
    assert 179 * DAY < ttl["u:known-1"] <= 180 * DAY


async def test_a_short_write_never_cuts_a_long_lifetime_and_renews_it(
    redis: Redis, redis_server: RedisServer
) -> None:
    visitor = anonymous()
    key = f"mbtest:{{v:a:{visitor['anonymousId']}}}:decisions"
    async with decision_app(redis_server.url, **SETTINGS) as (app, client):
        await assemble(client, user=visitor)  # a sticky arm: 30 days
        await settle(app)
        await redis.expire(key, 10 * DAY)  # as if 20 days went by
        await assemble(client, template=None, slots=["home.tip"], user=visitor, sessionId="later")
        await settle(app)
    fields = await redis.hkeys(key)
    names = [f.decode() if isinstance(f, bytes) else f for f in fields]
    assert any(name.startswith("a:") for name in names), "the sticky arm is still there"
    assert 29 * DAY < await redis.ttl(key) <= 30 * DAY, "a visit renews the sticky state"


async def test_random_visitors_with_nothing_to_remember_write_nothing(
    redis: Redis, redis_server: RedisServer
) -> None:
    async with decision_app(redis_server.url, **SETTINGS) as (app, client):
        for _ in range(20):
            slots = await assemble(client, template=None, slots=["home.hero"], user=anonymous())
            assert slots["home.hero"]["source"] == "baseline"
        await settle(app)
    assert await lifetimes(redis) == {}
