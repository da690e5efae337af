"""One bad message never fails a batch (issue 10, item 3): it is rejected on its own, by index,
and the good messages of the same request are stored and applied. Holds for `/v1/batch`, the
single-message routes and the signed Segment webhook; a property-based run over message shapes
finds no 5xx and nothing the consumer cannot apply.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from app import AppSettings
from segment_sync.stream.consumer import EventConsumer
from tests.segment_sync.support import post_signed, segment_settings
from tests.segment_sync.tracking_support import (
    KEYS,
    WRITE_KEY,
    bridge_settings,
    drained,
    events_settings,
    profile,
)
from tests.support.app import running_app
from tests.support.redis_server import RedisServer

Bridge = tuple[FastAPI, httpx.AsyncClient]
T = TypeVar("T")
TOO_DEEP = 300  # orjson encodes at most 254 levels, and decodes up to 1024


def nested(depth: int, kind: str = "list") -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


def dumps(value: Any) -> bytes:
    """JSON of any depth (orjson, like the service, encodes at most 254 levels)."""
    return json.dumps(value).encode()


def good(user: str, seconds: float = 40) -> dict[str, Any]:
    properties = {"product_id": "sku-1001", "duration": seconds}
    return {"type": "track", "event": "Product Viewed", "userId": user, "properties": properties}


def both_settings(redis_server: RedisServer, **values: Any) -> AppSettings:
    tracking = bridge_settings(redis_server.url, events_settings(**values))
    return dataclasses.replace(tracking, segment_webhook=segment_settings())


@asynccontextmanager
async def quiet_bridge(redis_server: RedisServer) -> AsyncIterator[Bridge]:
    async with running_app(both_settings(redis_server, consumer_enabled=False)) as running:
        yield running


@pytest.fixture
async def api(redis: Redis, redis_server: RedisServer) -> AsyncIterator[Bridge]:
    async with running_app(both_settings(redis_server)) as running:
        yield running


async def batch(client: httpx.AsyncClient, messages: list[Any], **extra: Any) -> httpx.Response:
    body = dumps({"writeKey": WRITE_KEY, "batch": messages, **extra})
    return await client.post("/v1/batch", content=body)


# --- the cases the issue names -----------------------------------------------------------------


async def test_a_message_nested_too_deep_is_rejected_by_index_and_the_rest_stored(
    api: Bridge, redis: Redis
) -> None:
    _, client = api
    deep = good("u-deep") | {"properties": {"tree": nested(TOO_DEEP)}}
    response = await batch(client, [good("u-first"), deep, good("u-last")])
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["accepted"] == 2
    assert [r["index"] for r in answer["rejected"]] == [1]
    assert "cannot be stored as JSON" in answer["rejected"][0]["detail"]
    await drained(redis)
    assert (await profile(redis, user_id="u-first")).signals["dwell"] == {"sku-1001": 40.0}
    assert (await profile(redis, user_id="u-last")).signals["dwell"] == {"sku-1001": 40.0}
    assert await profile(redis, user_id="u-deep") is None


async def test_a_deep_message_that_json_can_still_hold_is_stored(api: Bridge, redis: Redis) -> None:
    _, client = api
    fits = good("u-fits") | {"properties": {"product_id": "sku-1001", "tree": nested(200)}}
    response = await batch(client, [fits])
    assert response.json() == {"success": True}
    await drained(redis)
    assert await profile(redis, user_id="u-fits") is not None


@pytest.mark.parametrize("route", ["track", "identify", "page", "screen", "group", "alias"])
async def test_a_single_message_nested_too_deep_is_a_400(
    api: Bridge, redis: Redis, route: str
) -> None:
    _, client = api
    message = {
        "writeKey": WRITE_KEY,
        "userId": "u-single",
        "previousId": "u-before",
        "groupId": "g1",
        "event": "Clicked",
        "context": {"tree": nested(TOO_DEEP, "dict")},
    }
    response = await client.post(f"/v1/{route}", content=dumps(message))
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "InvalidMessage"
    assert await redis.xlen(KEYS.events_stream) == 0


async def test_a_time_out_of_range_once_corrected_is_rejected_alone(api: Bridge) -> None:
    _, client = api
    far = good("u-far") | {"timestamp": "9999-12-31T23:59:59Z", "sentAt": "0001-01-01T00:00:00Z"}
    response = await batch(client, [far, good("u-near")])
    assert response.status_code == 200, response.text
    assert [r["index"] for r in response.json()["rejected"]] == [0]
    assert "out of range" in response.json()["rejected"][0]["detail"]


async def test_a_batch_sent_at_that_is_no_date_is_a_400(api: Bridge, redis: Redis) -> None:
    _, client = api
    response = await batch(client, [good("u-x")], sentAt="yesterday")
    assert response.status_code == 400
    assert response.json()["error"] == "InvalidPayload"
    assert "sentAt" in response.json()["detail"]
    assert await redis.xlen(KEYS.events_stream) == 0


async def test_the_webhook_rejects_a_bad_event_by_index_and_applies_the_rest(
    api: Bridge, redis: Redis
) -> None:
    _, client = api
    deep = {"type": "identify", "userId": "u-wh-deep", "traits": {"t": nested(TOO_DEEP)}}
    no_ids = {"type": "track", "event": "Clicked", "messageId": "wh-no-ids"}
    response = await post_signed(client, dumps([good("u-wh-1"), deep, no_ids, good("u-wh-2")]))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["accepted"] == 2
    rejected = {r["index"]: r for r in answer["rejected"]}
    assert sorted(rejected) == [1, 2]
    assert rejected[2]["messageId"] == "wh-no-ids"
    assert "userId or an anonymousId" in rejected[2]["detail"]
    await drained(redis)
    assert await profile(redis, user_id="u-wh-1") is not None
    assert await profile(redis, user_id="u-wh-2") is not None
    assert await profile(redis, user_id="u-wh-deep") is None


async def test_the_webhook_with_only_bad_events_is_a_400(api: Bridge, redis: Redis) -> None:
    _, client = api
    deep = {"type": "identify", "userId": "u-wh-deep", "traits": {"t": nested(TOO_DEEP)}}
    for body in (deep, [deep, {"type": "track"}]):
        response = await post_signed(client, dumps(body))
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "InvalidPayload"
    assert await redis.xlen(KEYS.events_stream) == 0


# --- property: no message shape gets a 5xx -----------------------------------------------------

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_DEEP = st.builds(
    nested, st.integers(min_value=240, max_value=600), st.sampled_from(["list", "dict"])
)
_IDS = st.none() | st.just("") | st.text(max_size=300) | _SCALARS | _JSON
_DATES = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)).map(
    lambda d: d.isoformat() + "Z"
)
_TIMES = st.none() | st.text(max_size=30) | _DATES | _JSON
_KEYS = st.sampled_from(
    [
        "audience_key",
        "vip",
        "product_id",
        "category",
        "consent",
        "trait_key",
        "duration",
        "scroll_depth",
    ]
)
_OBJECTS = st.none() | _JSON | _DEEP | st.dictionaries(_KEYS, _JSON | _DEEP, max_size=4)
_PERSONAS = st.fixed_dictionaries(
    {"computation_class": st.sampled_from(["audience", "trait", "x"]) | _JSON},
    optional={"computation_key": st.sampled_from(["vip", "audience_key"]) | _JSON},
)
_CONTEXTS = _OBJECTS | st.builds(lambda p: {"personas": p}, _PERSONAS)
_TYPES = st.sampled_from(["identify", "track", "page", "screen", "group", "alias", "delete", "x"])
_EVENTS = st.sampled_from(
    ["Product Viewed", "Audience Entered", "Audience Exited", "Trait Computed"]
)
_MESSAGE = st.fixed_dictionaries(
    {},
    optional={
        "type": _TYPES | _JSON,
        "userId": _IDS,
        "anonymousId": _IDS,
        "previousId": _IDS,
        "groupId": _IDS,
        "event": _EVENTS | _JSON,
        "messageId": _IDS,
        "timestamp": _TIMES,
        "sentAt": _TIMES,
        "properties": _OBJECTS,
        "traits": _OBJECTS,
        "context": _CONTEXTS,
        "integrations": _OBJECTS,
    },
)
_ANY_MESSAGE = _MESSAGE | _JSON | _DEEP
PROPERTY = settings(
    max_examples=120,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class OnLoop:
    """Runs coroutines on the test's event loop from the thread hypothesis runs in."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def __call__(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        return asyncio.run_coroutine_threadsafe(make(), self._loop).result(timeout=60)


def check_batch(run: OnLoop, client: httpx.AsyncClient) -> Callable[[], None]:
    @PROPERTY
    @given(
        messages=st.lists(_ANY_MESSAGE, max_size=4),
        at=st.integers(min_value=0, max_value=4),
        extra=st.fixed_dictionaries({}, optional={"sentAt": _TIMES, "context": _OBJECTS}),
    )
    def prop(messages: list[Any], at: int, extra: dict[str, Any]) -> None:
        index = min(at, len(messages))
        messages.insert(index, good("u-prop"))
        response = run(lambda: batch(client, messages, **extra))
        assert response.status_code < 500, response.text
        if response.status_code == 200:
            answer = response.json()
            rejected = [r["index"] for r in answer.get("rejected", [])]
            assert index not in rejected, answer
            assert answer.get("accepted", len(messages)) + len(rejected) == len(messages)
        else:  # the batch's own sentAt or context, merged into every message, is bad
            assert response.json()["error"] in ("InvalidPayload", "MessagesRejected")

    return prop


def check_single(run: OnLoop, client: httpx.AsyncClient) -> Callable[[], None]:
    @PROPERTY
    @given(route=st.sampled_from(["track", "identify", "page", "group", "alias"]), message=_MESSAGE)
    def prop(route: str, message: dict[str, Any]) -> None:
        body = dumps({**message, "writeKey": WRITE_KEY})
        response = run(lambda: client.post(f"/v1/{route}", content=body))
        assert response.status_code < 500, response.text
        assert response.status_code in (200, 400, 413), response.text

    return prop


def check_webhook(run: OnLoop, client: httpx.AsyncClient) -> Callable[[], None]:
    @PROPERTY
    @given(events=st.lists(_ANY_MESSAGE, max_size=4), one=st.booleans())
    def prop(events: list[Any], one: bool) -> None:
        single = one and bool(events)
        body: Any = events[0] if single else [*events, good("u-prop-wh")]
        response = run(lambda: post_signed(client, dumps(body)))
        assert response.status_code < 500, response.text
        if not single:
            assert response.status_code == 200, response.text
            rejected = [r["index"] for r in response.json().get("rejected", [])]
            assert len(events) not in rejected

    return prop


@pytest.mark.parametrize("check", [check_batch, check_single, check_webhook])
async def test_no_message_shape_gets_a_5xx_or_poisons_the_consumer(
    redis: Redis,
    redis_server: RedisServer,
    check: Callable[[OnLoop, httpx.AsyncClient], Callable[[], None]],
) -> None:
    # The consumer runs afterwards: hypothesis wants no one else drawing from `random` (the
    # consumer's jitter) while it generates examples.
    async with quiet_bridge(redis_server) as (_, client):
        prop = check(OnLoop(asyncio.get_running_loop()), client)
        await asyncio.to_thread(prop)
    consumer = asyncio.create_task(EventConsumer(redis, KEYS, events_settings()).run())
    try:
        await drained(redis, within=60)
    finally:
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
    assert await redis.xlen(KEYS.events_dead) == 0, await redis.xrange(KEYS.events_dead)
