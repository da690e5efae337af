"""Audience freshness: a CDP membership confirmed longer ago than its audience's
`maxAgeSeconds` counts as unknown; the variant falls back and the reason says so.

Memberships arrive the real way (signed Segment webhook → stream → consumer, and a Profile
API pull against the loopback fake); the app runs on the test Redis with its clock set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from redis.asyncio import Redis

from integration.compiler import FieldReader, ModelError, parse_audience
from integration.schemas import Entity
from segment_sync.profile_api.pulls import ProfilePuller
from segment_sync.profiles.store import visitor_key
from tests.fakes.segment_profiles import FakeProfileApi
from tests.segment_sync.support import (
    app_settings,
    engage_identify,
    engage_track,
    post_signed,
    segment_settings,
    settle,
)
from tests.support.app import running_app
from tests.support.demo import publish, with_fields
from tests.support.redis_server import RedisServer

ENTERED = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
MAX_AGE = 3600
Bridge = tuple[FastAPI, httpx.AsyncClient]


@pytest.fixture
def profiles_api() -> Iterator[FakeProfileApi]:
    with FakeProfileApi() as api:
        api.put_profile("u-pulled", traits={}, audiences={"cart_abandoners": True})
        yield api


@pytest.fixture
async def bridge(
    redis: Redis, redis_server: RedisServer, profiles_api: FakeProfileApi
) -> AsyncIterator[Bridge]:
    segment = segment_settings(
        profile_space_id=profiles_api.space_id,
        profile_token=profiles_api.token,
        profile_url=profiles_api.url,
        profile_max_attempts=1,
    )
    async with running_app(app_settings(redis_server.url, segment)) as (app, client):
        await publish(app, with_fields("aud-cart-abandoners", maxAgeSeconds=MAX_AGE))
        yield app, client


def at(app: FastAPI, moment: datetime) -> None:
    app.state.services.assembly.service.clock = lambda: moment


def stamped(event: dict[str, Any], moment: datetime) -> dict[str, Any]:
    return {**event, "timestamp": moment.isoformat().replace("+00:00", "Z")}


async def hero(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    body = {"template": "home", "user": {"id": "u1"}, **body}
    response = await client.post("/v1/assemble", json=body)
    assert response.status_code == 200, response.text
    slots: dict[str, dict[str, Any]] = {s["slot"]: s for s in response.json()["slots"]}
    return slots["home.hero"]


async def enter(client: httpx.AsyncClient, redis: Redis, event: dict[str, Any]) -> None:
    response = await post_signed(client, event)
    assert response.status_code < 300, response.text
    await settle(redis)


async def test_a_fresh_membership_matches(bridge: Bridge, redis: Redis) -> None:
    app, client = bridge
    await enter(
        client,
        redis,
        stamped(engage_track("Audience Entered", "cart_abandoners", userId="u1"), ENTERED),
    )
    at(app, ENTERED + timedelta(seconds=MAX_AGE))
    slot = await hero(client)
    assert (slot["variant"], slot["reason"]) == ("hero-cart", "audience cart-abandoners")


async def test_a_stale_membership_falls_back_with_its_reason(bridge: Bridge, redis: Redis) -> None:
    app, client = bridge
    await enter(
        client,
        redis,
        stamped(engage_track("Audience Entered", "cart_abandoners", userId="u1"), ENTERED),
    )
    at(app, ENTERED + timedelta(seconds=MAX_AGE + 1))
    slot = await hero(client)
    assert (slot["source"], slot["variant"]) == ("baseline", None)
    assert slot["reason"] == "stale audience cart-abandoners"


async def test_a_resent_audience_entered_refreshes_the_membership(
    bridge: Bridge, redis: Redis
) -> None:
    app, client = bridge
    track = engage_track("Audience Entered", "cart_abandoners", userId="u1")
    await enter(client, redis, stamped(track, ENTERED))
    later = ENTERED + timedelta(hours=5)
    at(app, later)
    assert (await hero(client))["reason"] == "stale audience cart-abandoners"
    resent = engage_track("Audience Entered", "cart_abandoners", userId="u1")
    await enter(client, redis, stamped(resent, later - timedelta(minutes=1)))
    assert (await hero(client))["variant"] == "hero-cart"


async def test_an_audience_identify_refreshes_the_membership(bridge: Bridge, redis: Redis) -> None:
    app, client = bridge
    await enter(
        client, redis, stamped(engage_identify("cart_abandoners", True, userId="u1"), ENTERED)
    )
    later = ENTERED + timedelta(hours=5)
    at(app, later)
    assert (await hero(client))["reason"] == "stale audience cart-abandoners"
    again = engage_identify("cart_abandoners", True, userId="u1")
    await enter(client, redis, stamped(again, later))
    assert (await hero(client))["variant"] == "hero-cart"


async def test_a_profile_api_pull_confirms_its_memberships(bridge: Bridge, redis: Redis) -> None:
    app, client = bridge
    puller = app.state.services.webhooks.profiles
    assert isinstance(puller, ProfilePuller)
    before = datetime.now(UTC)
    assert await puller.pull("u-pulled") == "written"
    raw = await redis.hget(
        visitor_key(app.state.services.integration.keys, user_id="u-pulled"), "audAt"
    )
    assert raw is not None
    member, confirmed = orjson.loads(raw)["cart_abandoners"]
    assert member == 1
    assert confirmed >= before.timestamp()
    at(app, datetime.fromtimestamp(confirmed, UTC) + timedelta(seconds=60))
    assert (await hero(client, user={"id": "u-pulled"}))["variant"] == "hero-cart"
    at(app, datetime.fromtimestamp(confirmed, UTC) + timedelta(seconds=MAX_AGE + 60))
    slot = await hero(client, user={"id": "u-pulled"})
    assert slot["reason"] == "stale audience cart-abandoners"


async def test_a_membership_without_a_confirmation_time_is_stale(
    bridge: Bridge, redis: Redis
) -> None:
    app, client = bridge
    key = visitor_key(app.state.services.integration.keys, user_id="u1")
    await redis.hset(key, "audiences", orjson.dumps(["cart_abandoners"]))
    at(app, ENTERED)
    assert (await hero(client))["reason"] == "stale audience cart-abandoners"


async def test_an_audience_the_request_names_is_fresh(bridge: Bridge, redis: Redis) -> None:
    app, client = bridge
    at(app, ENTERED)
    slot = await hero(client, context={"audiences": ["cart_abandoners"]})
    assert (slot["variant"], slot["reason"]) == ("hero-cart", "audience cart-abandoners")


async def test_without_max_age_a_membership_never_goes_stale(bridge: Bridge, redis: Redis) -> None:
    app, client = bridge
    unlimited = with_fields("aud-cart-abandoners", maxAgeSeconds=None)
    unlimited["sys"]["revision"] += 1  # newer than the fixture's
    await publish(app, unlimited)
    await enter(
        client,
        redis,
        stamped(engage_track("Audience Entered", "cart_abandoners", userId="u1"), ENTERED),
    )
    at(app, ENTERED + timedelta(days=20))
    assert (await hero(client))["variant"] == "hero-cart"


class TestCompiler:
    @staticmethod
    def reader(**fields: Any) -> FieldReader:
        entity = Entity(
            kind="Entry",
            id="aud-x",
            content_type="mbAudience",
            revision=1,
            updated_at="2026-11-25T12:00:00Z",
            fields={name: {"en-US": value} for name, value in {"key": "x", **fields}.items()},
        )
        return FieldReader(entity, "en-US")

    def test_max_age_is_read(self) -> None:
        assert parse_audience(self.reader(maxAgeSeconds=900)).max_age_seconds == 900
        assert parse_audience(self.reader()).max_age_seconds is None

    @pytest.mark.parametrize("value", [-1, 1.5, "600"])
    def test_a_bad_max_age_is_a_model_error(self, value: Any) -> None:
        with pytest.raises(ModelError, match="maxAgeSeconds"):
            parse_audience(self.reader(maxAgeSeconds=value))


async def test_explain_shows_each_membership_age_and_why_it_is_stale(
    redis: Redis, redis_server: RedisServer
) -> None:
    settings = app_settings(redis_server.url, segment_settings())
    service = settings.service.model_copy(update={"admin_token": SecretStr("ops")})
    async with running_app(dataclasses.replace(settings, service=service)) as (app, client):
        await publish(app, with_fields("aud-cart-abandoners", maxAgeSeconds=MAX_AGE))
        await enter(
            client,
            redis,
            stamped(engage_track("Audience Entered", "cart_abandoners", userId="u1"), ENTERED),
        )
        at(app, ENTERED + timedelta(seconds=MAX_AGE + 30))
        answer = await client.post(
            "/admin/explain",
            json={"template": "home", "user": {"id": "u1"}},
            headers={"authorization": "Bearer ops"},
        )
    assert answer.status_code == 200, answer.text
    hero = next(s for s in answer.json()["slots"] if s["slot"] == "home.hero")
    rules = next(c for c in hero["candidates"] if c["variant"] == "hero-cart")["rules"]
    audiences = next(r for r in rules if r["rule"] == "audiences")
    part = audiences["read"]["audiences"][0]
    (membership,) = part["memberships"]
    assert membership["segment"] == "cart_abandoners"
    assert membership["ageSeconds"] == MAX_AGE + 30
    assert membership["maxAgeSeconds"] == MAX_AGE
    assert membership["fresh"] is False
    assert "stale audience" in audiences["detail"]
    assert hero["reason"] == "stale audience cart-abandoners"
