"""Frequency caps and session coherence across requests, on the real app and Redis.

Demo content: `banner-winter-sale` (everyone, Nov 2026 to Feb 2027) is capped at 5 views a day;
`hero-cart` (cart abandoners, priority 20) outranks `hero-video` (video lovers, 10).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from redis.asyncio import Redis

from tests.assembly.support import NOW, Client, assemble, decision_app, settle
from tests.support.demo import publish, with_fields
from tests.support.redis_server import RedisServer

VIDEO = {"audiences": ["video_lovers"]}
BOTH = {"audiences": ["video_lovers", "cart_abandoners"]}


@pytest.fixture
async def bridge(redis: Redis, redis_server: RedisServer) -> AsyncIterator[Client]:
    async with decision_app(redis_server.url) as running:
        yield running


async def banner(bridge: Client, session: str) -> str:
    app, client = bridge
    answer = await assemble(client, user={"id": "capped"}, sessionId=session)
    await settle(app)
    slot = answer["home.banner"]
    return str(slot["variant"] or slot["reason"])


async def test_a_daily_cap_gives_way_to_the_baseline_until_the_next_day(
    bridge: Client, redis: Redis
) -> None:
    app, _ = bridge
    seen = [await banner(bridge, session=f"s{i}") for i in range(6)]
    assert seen == ["banner-winter-sale"] * 5 + ["frequency cap: banner-winter-sale (5 per day)"]
    stored = await redis.hget("mbtest:{v:u:capped}:decisions", "n:banner-winter-sale:d20261125")
    assert stored == b"5", "the capped view was not counted"
    app.state.services.assembly.service.clock = lambda: NOW + timedelta(days=1)
    assert await banner(bridge, session="next-day") == "banner-winter-sale"


async def test_the_cap_holds_before_the_counts_are_flushed(
    redis: Redis, redis_server: RedisServer
) -> None:
    async with decision_app(redis_server.url, writer_flush_seconds=1.0) as (app, client):
        seen = []
        for _ in range(6):
            answer = await assemble(client, user={"id": "fast"}, sessionId="s1")
            seen.append(answer["home.banner"]["variant"])
        assert not await redis.exists("mbtest:{v:u:fast}:decisions"), "nothing flushed yet"
        assert seen == ["banner-winter-sale"] * 5 + [None]
        await settle(app)


async def test_session_keeps_the_variant_a_higher_priority_one_would_replace(
    bridge: Client,
) -> None:
    app, client = bridge
    visitor = {"user": {"anonymousId": "coherent"}}
    first = await assemble(client, sessionId="s1", context=VIDEO, **visitor)
    assert first["home.hero"]["variant"] == "hero-video"
    await settle(app)
    same_session = await assemble(client, sessionId="s1", context=BOTH, **visitor)
    assert same_session["home.hero"]["variant"] == "hero-video"
    assert same_session["home.hero"]["reason"] == "session coherence: audience video-lovers"
    new_session = await assemble(client, sessionId="s2", context=BOTH, **visitor)
    assert new_session["home.hero"]["variant"] == "hero-cart"


async def test_a_variant_no_longer_eligible_is_not_kept(bridge: Client) -> None:
    app, client = bridge
    visitor = {"user": {"anonymousId": "moving"}, "sessionId": "s1"}
    await assemble(client, context=BOTH, **visitor)
    await settle(app)
    answer = await assemble(client, context=VIDEO, **visitor)  # no longer a cart abandoner
    assert answer["home.hero"]["variant"] == "hero-video"
    assert answer["home.hero"]["reason"] == "audience video-lovers"


async def test_kill_switches_still_win_over_session_coherence(bridge: Client) -> None:
    app, client = bridge
    visitor = {"user": {"anonymousId": "switched"}, "sessionId": "s1", "context": VIDEO}
    assert (await assemble(client, **visitor))["home.hero"]["variant"] == "hero-video"
    await settle(app)
    await publish(app, with_fields("var-hero-video", enabled=False))
    hero = (await assemble(client, **visitor))["home.hero"]
    assert (hero["source"], hero["reason"]) == ("baseline", "kill switch: variant hero-video")


async def test_coherence_can_be_turned_off(redis: Redis, redis_server: RedisServer) -> None:
    async with decision_app(redis_server.url, session_coherence=False) as (app, client):
        visitor = {"user": {"anonymousId": "free"}, "sessionId": "s1"}
        await assemble(client, context=VIDEO, **visitor)
        await settle(app)
        answer = await assemble(client, context=BOTH, **visitor)
        assert answer["home.hero"]["variant"] == "hero-cart"
        await settle(app)
    session_marks = [k for k in await redis.hkeys("mbtest:{v:a:free}:decisions") if b":slot:" in k]
    assert session_marks == []


async def test_without_a_session_id_nothing_is_kept(bridge: Client) -> None:
    app, client = bridge
    visitor = {"user": {"anonymousId": "sessionless"}}
    await assemble(client, context=VIDEO, **visitor)
    await settle(app)
    answer = await assemble(client, context=BOTH, **visitor)
    assert answer["home.hero"]["variant"] == "hero-cart"
