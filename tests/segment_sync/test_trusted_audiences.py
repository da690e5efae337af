"""Audiences only from trusted sources, applied in event-time order (issue 10, item 4).

Write keys are public in browser snippets: Engage audience and persona changes count only from
the signed Segment webhook, the Profile API, or a write key in SEGMENT_SERVER_WRITE_KEYS.
Everything runs through the real service, stream, consumer and Redis.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from segment_sync.config import SignalRules
from segment_sync.profiles.state import ProfileState, decode_row, encode_view, merge_into
from tests.segment_sync.support import (
    assemble_home,
    engage_identify,
    engage_track,
    personas,
    post_signed,
    segment_settings,
)
from tests.segment_sync.tracking_support import (
    WRITE_KEY,
    bridge_settings,
    drained,
    events_settings,
    profile,
)
from tests.support.app import running_app
from tests.support.redis_server import RedisServer

Bridge = tuple[FastAPI, httpx.AsyncClient]
SERVER_KEY = "wk-server-only-5be1"
T1, T2, T3 = "2026-11-25T12:00:00.000Z", "2026-11-25T13:00:00.000Z", "2026-11-25T14:00:00.000Z"


@pytest.fixture
async def api(redis: Redis, redis_server: RedisServer) -> AsyncIterator[Bridge]:
    tracking = bridge_settings(redis_server.url, events_settings(server_write_keys=SERVER_KEY))
    settings = dataclasses.replace(tracking, segment_webhook=segment_settings())
    async with running_app(settings) as running:
        yield running


async def send(client: httpx.AsyncClient, key: str, *messages: dict[str, Any]) -> None:
    body = orjson.dumps({"writeKey": key, "batch": list(messages)})
    response = await client.post("/v1/batch", content=body)
    assert response.json() == {"success": True}, response.text


async def audiences(redis: Redis, user: str) -> frozenset[str]:
    """The user's audiences as /v1/assemble reads them (no profile: none)."""
    stored = await profile(redis, user_id=user)
    return frozenset() if stored is None else frozenset(stored.audiences)


def ignored(source: str) -> float:
    value = REGISTRY.get_sample_value(
        "microbridge_audience_changes_ignored_total", {"source": source}
    )
    return value or 0.0


def claims(user: str) -> list[dict[str, Any]]:
    """Everything a browser could post to claim VIP content for `user`."""
    return [
        engage_track("Audience Entered", "cart_abandoners", userId=user),
        engage_identify("video_lovers", True, userId=user),
        {"type": "identify", "userId": user, "traits": {"plan": "pro", "personas": ["runner"]}},
        {
            "type": "identify",
            "userId": user,
            "context": personas("trait", "lifetime_value"),
            "traits": {"lifetime_value": 9000},
        },
    ]


async def test_a_browser_write_key_cannot_set_audiences_or_personas(
    api: Bridge, redis: Redis
) -> None:
    _, client = api
    before = ignored("tracking")
    await send(client, WRITE_KEY, *claims("u-attacker"))
    await drained(redis)
    stored = await profile(redis, user_id="u-attacker")
    assert stored.audiences == frozenset()
    assert stored.traits == {"plan": "pro"}, "ordinary traits stay; personas do not"
    assert ignored("tracking") - before == 4
    assert (await assemble_home(client, id="u-attacker"))["home.hero"]["variant"] is None


async def test_a_server_write_key_sets_audiences_and_personas(api: Bridge, redis: Redis) -> None:
    _, client = api
    before = ignored("tracking-server")
    await send(client, SERVER_KEY, *claims("u-vip"))
    await drained(redis)
    stored = await profile(redis, user_id="u-vip")
    assert stored.audiences == {"cart_abandoners", "video_lovers"}
    assert stored.traits == {"plan": "pro", "personas": ["runner"], "lifetime_value": 9000}
    assert ignored("tracking-server") == before
    assert (await assemble_home(client, id="u-vip"))["home.hero"]["variant"] is not None


async def test_a_server_key_as_basic_auth_is_trusted_too(api: Bridge, redis: Redis) -> None:
    _, client = api
    body = orjson.dumps({"batch": [engage_track("Audience Entered", "video_lovers", userId="u-b")]})
    response = await client.post("/v1/batch", content=body, auth=(SERVER_KEY, ""))
    assert response.json() == {"success": True}
    await drained(redis)
    assert (await profile(redis, user_id="u-b")).audiences == {"video_lovers"}


async def test_the_signed_webhook_is_trusted(api: Bridge, redis: Redis) -> None:
    _, client = api
    response = await post_signed(client, claims("u-segment"))
    assert response.status_code == 200, response.text
    await drained(redis)
    assert (await profile(redis, user_id="u-segment")).audiences == {
        "cart_abandoners",
        "video_lovers",
    }


# --- event-time order --------------------------------------------------------------------------


def at(message: dict[str, Any], timestamp: str) -> dict[str, Any]:
    return message | {"timestamp": timestamp}


async def test_a_late_older_entered_does_not_undo_a_newer_exited(api: Bridge, redis: Redis) -> None:
    _, client = api
    user = {"userId": "u-order"}
    await post_signed(client, at(engage_track("Audience Exited", "cart_abandoners", **user), T2))
    await post_signed(client, at(engage_track("Audience Entered", "cart_abandoners", **user), T1))
    await drained(redis)
    assert await audiences(redis, "u-order") == frozenset()
    await post_signed(client, at(engage_identify("cart_abandoners", True, **user), T3))
    await drained(redis)
    assert (await profile(redis, user_id="u-order")).audiences == {"cart_abandoners"}


async def test_order_holds_per_audience_and_across_sources(api: Bridge, redis: Redis) -> None:
    _, client = api
    user = {"userId": "u-two"}
    await send(
        client,
        SERVER_KEY,
        at(engage_track("Audience Entered", "cart_abandoners", **user), T2),
        at(engage_track("Audience Exited", "video_lovers", **user), T2),
    )
    await drained(redis)
    await post_signed(
        client,
        [
            at(engage_track("Audience Exited", "cart_abandoners", **user), T1),  # older: ignored
            at(engage_track("Audience Entered", "video_lovers", **user), T3),  # newer: applies
        ],
    )
    await drained(redis)
    assert (await profile(redis, user_id="u-two")).audiences == {
        "cart_abandoners",
        "video_lovers",
    }


async def test_merging_keeps_the_newest_change_of_each_audience(api: Bridge, redis: Redis) -> None:
    _, client = api
    anon, user = {"anonymousId": "a-merge"}, {"userId": "u-merge"}
    await post_signed(
        client,
        [
            at(engage_track("Audience Exited", "cart_abandoners", **anon), T3),
            at(engage_track("Audience Entered", "cart_abandoners", **user), T2),
            at(engage_track("Audience Entered", "video_lovers", **anon), T1),
        ],
    )
    await drained(redis)
    await send(client, WRITE_KEY, {"type": "identify", **user, **anon})
    await drained(redis)
    assert (await profile(redis, user_id="u-merge")).audiences == {"video_lovers"}
    late = at(engage_track("Audience Entered", "cart_abandoners", **user), T1)
    await post_signed(client, late)
    await drained(redis)
    assert (await profile(redis, user_id="u-merge")).audiences == {"video_lovers"}


def test_change_times_survive_the_hash_encoding() -> None:
    state = ProfileState()
    assert state.change_audience("a", True, 20.0)
    assert state.change_audience("b", False, 30.0)
    assert not state.change_audience("a", False, 10.0)
    row = {k.encode(): v for k, v in encode_view(state).items()}
    decoded = decode_row(row)
    assert decoded.audiences == {"a"}
    assert decoded.audience_times == {"a": (True, 20.0), "b": (False, 30.0)}
    other = ProfileState(audiences={"b"}, audience_times={"b": (True, 25.0), "c": (True, 5.0)})
    merge_into(decoded, other, SignalRules())
    assert decoded.audiences == {"a", "c"}, "b's exit at 30 is newer than the other's entry"
