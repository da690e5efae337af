"""`POST /webhooks/segment` end to end: real signed requests, the running app, a real Redis.

Every bad input gets a 4xx `{"error", "detail"}` and leaves Redis as it was.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from redis.asyncio import Redis

from app import ConfigurationError, load_settings
from core.redis import Keys
from segment_sync.profiles.store import RedisProfileStore
from segment_sync.webhook_config import SegmentWebhookSettings
from tests.segment_sync.support import (
    NEW_SECRET,
    OLD_SECRET,
    PREFIX,
    app_settings,
    assemble_home,
    engage_identify,
    engage_track,
    message_id,
    post_signed,
    segment_settings,
    settle,
    snapshot,
)
from tests.support.app import running_app
from tests.support.redis_server import RedisServer, free_port
from tests.support.waiting import eventually
from webhooks.segment.service import dedupe_key
from webhooks.verification import sign_segment

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "segment"
Bridge = tuple[FastAPI, httpx.AsyncClient]


def reference(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((REFERENCE / name).read_text("utf-8"))
    return document


@pytest.fixture
async def bridge(redis: Redis, redis_server: RedisServer) -> AsyncIterator[Bridge]:
    async with running_app(app_settings(redis_server.url, segment_settings())) as running:
        yield running


async def hero(client: httpx.AsyncClient, **user: str) -> str | None:
    variant: str | None = (await assemble_home(client, **user))["home.hero"]["variant"]
    return variant


# --- Engage audiences reach /v1/assemble ------------------------------------------------------


async def test_engage_identify_enters_and_exits_an_audience(bridge: Bridge) -> None:
    _, client = bridge
    assert await hero(client, id="u-engage") is None

    entered = await post_signed(client, engage_identify("cart_abandoners", True, userId="u-engage"))
    assert entered.status_code == 200, entered.text
    assert entered.json() == {"status": "accepted", "accepted": 1, "duplicates": 0}
    await eventually(lambda: hero(client, id="u-engage"), lambda v: v == "hero-cart")

    exited = await post_signed(client, engage_identify("cart_abandoners", False, userId="u-engage"))
    assert exited.status_code == 200
    await eventually(lambda: hero(client, id="u-engage"), lambda v: v is None)


async def test_engage_track_enters_and_exits_an_audience(bridge: Bridge) -> None:
    _, client = bridge
    event = engage_track("Audience Entered", "video_lovers", userId="u-track")
    assert (await post_signed(client, event)).status_code == 200
    await eventually(lambda: hero(client, id="u-track"), lambda v: v == "hero-video")

    event = engage_track("Audience Exited", "video_lovers", userId="u-track")
    assert (await post_signed(client, event)).status_code == 200
    await eventually(lambda: hero(client, id="u-track"), lambda v: v is None)


async def test_reference_track_entered_payload_is_accepted(bridge: Bridge) -> None:
    _, client = bridge
    event = reference("engage-audience-track-entered.json")
    event["properties"] = {"audience_key": "cart_abandoners", "cart_abandoners": True}
    assert (await post_signed(client, event)).status_code == 200
    await eventually(lambda: hero(client, id="u123"), lambda v: v == "hero-cart")


async def test_computed_trait_is_usable_in_conditions(bridge: Bridge) -> None:
    _, client = bridge
    event = reference("engage-computed-trait-identify.json")
    event |= {"messageId": message_id(), "userId": "u-runner", "traits": {"personas": ["runner"]}}
    assert (await post_signed(client, event)).status_code == 200

    async def tip() -> str | None:
        variant: str | None = (await assemble_home(client, id="u-runner"))["home.tip"]["variant"]
        return variant

    await eventually(tip, lambda v: v == "tip-runner")


async def test_webhook_on_one_replica_personalizes_on_another(
    redis: Redis, redis_server: RedisServer
) -> None:
    settings = app_settings(redis_server.url, segment_settings())
    async with running_app(settings) as (_, one), running_app(settings) as (_, other):
        event = engage_identify("cart_abandoners", True, userId="u-replicas")
        assert (await post_signed(one, event)).status_code == 200
        await eventually(lambda: hero(other, id="u-replicas"), lambda v: v == "hero-cart")


# --- identity ---------------------------------------------------------------------------------


async def test_identify_with_both_ids_merges_the_anonymous_audiences(bridge: Bridge) -> None:
    _, client = bridge
    anonymous = engage_track("Audience Entered", "cart_abandoners", anonymousId="a-merge")
    assert (await post_signed(client, anonymous)).status_code == 200
    await eventually(lambda: hero(client, anonymousId="a-merge"), lambda v: v == "hero-cart")

    identify = {
        "type": "identify",
        "messageId": message_id(),
        "userId": "u-merge",
        "anonymousId": "a-merge",
        "traits": {"personas": ["runner"]},
    }
    assert (await post_signed(client, identify)).status_code == 200

    async def known() -> dict[str, dict[str, Any]]:
        return await assemble_home(client, id="u-merge")

    slots = await eventually(known, lambda s: s["home.tip"]["variant"] == "tip-runner")
    assert slots["home.hero"]["variant"] == "hero-cart", "the anonymous audience survived"


async def test_alias_links_the_previous_id(bridge: Bridge) -> None:
    _, client = bridge
    anonymous = engage_track("Audience Entered", "video_lovers", anonymousId="a-alias")
    assert (await post_signed(client, anonymous)).status_code == 200
    await eventually(lambda: hero(client, anonymousId="a-alias"), lambda v: v == "hero-video")

    alias = {"type": "alias", "messageId": message_id(), "previousId": "a-alias"}
    alias |= {"userId": "u-alias", "anonymousId": "a-alias"}
    assert (await post_signed(client, alias)).status_code == 200
    await eventually(lambda: hero(client, id="u-alias"), lambda v: v == "hero-video")


# --- other events, dedupe, batches --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("webhooks-classic-track.json", "track"),
        ("webhooks-classic-page.json", "page"),
        ("webhooks-classic-identify.json", "identify"),
        ("http-api-group.json", "group"),
        ("http-api-screen.json", "screen"),
        ("http-api-alias.json", "alias"),
    ],
)
async def test_every_event_type_is_accepted_and_enqueued(
    bridge: Bridge, redis: Redis, name: str, kind: str
) -> None:
    _, client = bridge
    event = reference(name)
    event.pop("writeKey", None)
    event.setdefault("type", kind)
    before = await stream_entries(redis)
    response = await post_signed(client, event)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    after = await eventually(lambda: stream_entries(redis), lambda n: n == before + 1)
    assert after == before + 1


async def test_deletion_notice_erases_the_profile(bridge: Bridge, redis: Redis) -> None:
    _, client = bridge
    entered = engage_identify("cart_abandoners", True, userId="019mr8mf4r")
    assert (await post_signed(client, entered)).status_code == 200
    await eventually(lambda: hero(client, id="019mr8mf4r"), lambda v: v == "hero-cart")

    deletion = reference("webhooks-classic-delete.json")
    response = await post_signed(client, deletion)
    assert response.json() == {"status": "accepted", "accepted": 1, "duplicates": 0}
    assert await hero(client, id="019mr8mf4r") is None, "erased before the answer"
    assert await redis.exists(Keys(PREFIX).profile_erased("u:019mr8mf4r"))
    assert (await post_signed(client, deletion)).json()["status"] == "duplicate"


async def test_replay_is_a_duplicate_and_changes_nothing(bridge: Bridge, redis: Redis) -> None:
    _, client = bridge
    event = engage_identify("cart_abandoners", True, userId="u-replay")
    assert (await post_signed(client, event)).status_code == 200
    store = RedisProfileStore(redis, Keys(PREFIX))
    profile = await eventually(lambda: store.read("u-replay", None), lambda p: p is not None)
    assert profile is not None
    assert profile.audiences == {"cart_abandoners"}
    await settle(redis)
    before = await snapshot(redis)  # no assemble yet: its exposure writes would race the check

    replay = await post_signed(client, event, secret=OLD_SECRET)
    assert replay.status_code == 200
    assert replay.json() == {"status": "duplicate", "accepted": 0, "duplicates": 1}
    assert await snapshot(redis) == before


async def test_events_without_message_id_dedupe_on_their_content(
    bridge: Bridge, redis: Redis
) -> None:
    _, client = bridge
    event = reference("webhooks-classic-track.json")
    assert "messageId" not in event
    assert (await post_signed(client, event)).json()["accepted"] == 1
    assert await stream_entries(redis) == 1
    await settle(redis)
    before = await snapshot(redis)
    assert (await post_signed(client, event)).json()["status"] == "duplicate"
    assert await snapshot(redis) == before


async def test_dedupe_key_expires(bridge: Bridge, redis: Redis) -> None:
    _, client = bridge
    event = engage_identify("cart_abandoners", True, userId="u-ttl")
    assert (await post_signed(client, event)).status_code == 200
    ttl = await redis.ttl(dedupe_key(Keys(PREFIX), event["messageId"]))
    assert 0 < ttl <= 24 * 3600


async def test_batch_signed_over_its_first_event(redis: Redis, redis_server: RedisServer) -> None:
    first = engage_identify("cart_abandoners", True, userId="u-batch-1")
    second = engage_identify("video_lovers", True, userId="u-batch-2")
    body = orjson.dumps([first, second])
    signature = sign_segment(secret=NEW_SECRET, body=orjson.dumps(first))
    settings = app_settings(redis_server.url, segment_settings(webhook_accept_batches=True))
    async with running_app(settings) as (_, client):
        response = await post_signed(client, body, signature=signature)
        assert response.json() == {"status": "accepted", "accepted": 2, "duplicates": 0}
        await eventually(lambda: hero(client, id="u-batch-2"), lambda v: v == "hero-video")
        assert await hero(client, id="u-batch-1") == "hero-cart"


async def test_batch_refused_unless_enabled(bridge: Bridge, redis: Redis) -> None:
    _, client = bridge
    first = engage_identify("cart_abandoners", True, userId="u-batch-1")
    body = orjson.dumps([first, engage_identify("video_lovers", True, userId="u-batch-2")])
    before = await snapshot(redis)
    signature = sign_segment(secret=NEW_SECRET, body=orjson.dumps(first))
    response = await post_signed(client, body, signature=signature)
    assert response.status_code == 401
    assert response.json()["error"] == "SignatureInvalid"
    assert await snapshot(redis) == before


async def test_batch_signed_whole_is_accepted(bridge: Bridge) -> None:
    _, client = bridge
    events = [engage_identify("video_lovers", True, userId=f"u-whole-{i}") for i in range(3)]
    response = await post_signed(client, events)
    assert response.json() == {"status": "accepted", "accepted": 3, "duplicates": 0}


# --- bad input: 4xx, nothing changes ------------------------------------------------------------


def _valid() -> dict[str, Any]:
    return engage_identify("cart_abandoners", True, userId="u-bad")


BAD_INPUT: list[tuple[str, dict[str, Any], int, str]] = [
    ("missing signature", {"body": _valid(), "secret": None}, 401, "SignatureMissing"),
    ("malformed signature", {"body": _valid(), "signature": "not-hex"}, 401, "SignatureMalformed"),
    ("wrong secret", {"body": _valid(), "secret": "someone-else"}, 401, "SignatureInvalid"),
    (
        "signature of another body",
        {"body": _valid(), "signature": "5099cab379b3be52908387457007040cc934ef86"},
        401,
        "SignatureInvalid",
    ),
    ("malformed JSON", {"body": b'{"type": "identify", "userId": '}, 400, "InvalidPayload"),
    ("JSON string", {"body": b'"identify"'}, 400, "InvalidPayload"),
    ("empty batch", {"body": b"[]"}, 400, "InvalidPayload"),
    (
        "no ids",
        {"body": {"type": "track", "event": "Viewed", "messageId": "m-1"}},
        400,
        "InvalidPayload",
    ),
    (
        "null and empty ids",
        {"body": {"type": "track", "event": "Viewed", "userId": None, "anonymousId": ""}},
        400,
        "InvalidPayload",
    ),
    ("no type", {"body": {"userId": "u-bad", "messageId": "m-2"}}, 400, "InvalidPayload"),
    (
        "userId is an object",
        {"body": {"type": "identify", "userId": {"id": 42}, "messageId": "m-3"}},
        400,
        "InvalidPayload",
    ),
    ("unknown type", {"body": _valid() | {"type": "purchase"}}, 400, "InvalidPayload"),
    ("track without event", {"body": {"type": "track", "userId": "u-bad"}}, 400, "InvalidPayload"),
    (
        "delete without userId",
        {"body": {"type": "delete", "anonymousId": "a"}},
        400,
        "InvalidPayload",
    ),
    (
        "message over 32 KB",
        {"body": _valid() | {"properties": {"blob": "x" * 40_000}}},
        400,
        "InvalidPayload",
    ),
    (
        "audience trait is a string",
        {"body": engage_identify("cart_abandoners", "true", userId="u-bad")},
        400,
        "InvalidPayload",
    ),
    (
        "audience trait is null",
        {"body": engage_identify("cart_abandoners", None, userId="u-bad")},
        400,
        "InvalidPayload",
    ),
    (
        "Audience Entered with false",
        {
            "body": engage_track("Audience Entered", "cart_abandoners", userId="u-bad")
            | {"properties": {"audience_key": "cart_abandoners", "cart_abandoners": False}}
        },
        400,
        "InvalidPayload",
    ),
    (
        "every event of the batch is bad",
        {"body": [engage_identify("cart_abandoners", 1, userId="u-bad"), {"type": "track"}]},
        400,
        "InvalidPayload",
    ),
]


@pytest.mark.parametrize(
    ("request_args", "status", "error"),
    [case[1:] for case in BAD_INPUT],
    ids=[case[0] for case in BAD_INPUT],
)
async def test_bad_input_is_rejected_and_changes_nothing(
    bridge: Bridge, redis: Redis, request_args: dict[str, Any], status: int, error: str
) -> None:
    _, client = bridge
    before = await snapshot(redis)
    response = await post_signed(client, **request_args)
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert response.json()["detail"]
    assert await snapshot(redis) == before
    assert await hero(client, id="u-bad") is None


async def test_one_bad_event_is_rejected_by_index_and_the_rest_accepted(
    bridge: Bridge,
) -> None:
    _, client = bridge
    bad = engage_identify("cart_abandoners", 1, userId="u-bad-2")
    good = engage_identify("cart_abandoners", True, userId="u-good")
    answer = (await post_signed(client, [good, bad])).json()
    assert answer["accepted"] == 1
    assert answer["rejected"] == [
        {
            "index": 1,
            "messageId": bad["messageId"],
            "detail": "audience trait 'cart_abandoners' must be true or false, not int 1",
        }
    ]
    await eventually(lambda: hero(client, id="u-good"), lambda v: v == "hero-cart")
    assert await hero(client, id="u-bad-2") is None


async def test_only_bad_events_detail_names_the_first_and_its_index(bridge: Bridge) -> None:
    _, client = bridge
    body = [{"type": "track"}, engage_identify("cart_abandoners", 1, userId="u-bad-2")]
    detail = (await post_signed(client, body)).json()["detail"]
    assert detail.startswith("all 2 event(s) rejected; first: event 0: ")


async def test_body_over_one_megabyte_is_413(bridge: Bridge, redis: Redis) -> None:
    _, client = bridge
    event = _valid() | {"properties": {"blob": "x" * (1024 * 1024)}}
    before = await snapshot(redis)
    response = await post_signed(client, event)
    assert response.status_code == 413
    assert response.json()["error"] == "PayloadTooLarge"
    assert await snapshot(redis) == before


async def test_secret_removed_after_rotation_is_401(
    redis: Redis, redis_server: RedisServer
) -> None:
    settings = app_settings(redis_server.url, segment_settings(webhook_secrets=NEW_SECRET))
    async with running_app(settings) as (_, client):
        before = await snapshot(redis)
        old = await post_signed(client, _valid(), secret=OLD_SECRET)
        assert old.status_code == 401
        assert old.json()["error"] == "SignatureInvalid"
        assert await snapshot(redis) == before
        assert (await post_signed(client, _valid(), secret=NEW_SECRET)).status_code == 200


async def test_no_secret_disables_the_endpoint(redis: Redis, redis_server: RedisServer) -> None:
    settings = app_settings(redis_server.url, segment_settings(webhook_secrets=""))
    async with running_app(settings) as (_, client):
        before = await snapshot(redis)
        response = await post_signed(client, _valid())
        assert response.status_code == 404
        assert response.json()["error"] == "WebhookDisabled"
        assert await snapshot(redis) == before


async def test_store_down_is_503_so_segment_retries() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    async with running_app(app_settings(dead, segment_settings()), ready=False) as (_, client):
        response = await post_signed(client, _valid())
    assert response.status_code == 503
    assert response.json()["error"] == "WebhookStoreUnavailable"


async def test_failed_enqueue_releases_the_claim_so_the_retry_goes_through(
    bridge: Bridge, redis: Redis
) -> None:
    _, client = bridge
    stream = Keys(PREFIX).events_stream
    await redis.delete(stream)
    await redis.set(stream, b"not a stream")  # XADD now fails with WRONGTYPE
    event = engage_identify("cart_abandoners", True, userId="u-retry")

    failed = await post_signed(client, event)
    assert failed.status_code == 503
    assert failed.json()["error"] == "WebhookStoreUnavailable"
    assert not await redis.exists(dedupe_key(Keys(PREFIX), event["messageId"]))

    await redis.delete(stream)
    retried = await post_signed(client, event)
    assert retried.json() == {"status": "accepted", "accepted": 1, "duplicates": 0}
    store = RedisProfileStore(redis, Keys(PREFIX))
    await eventually(lambda: store.read("u-retry", None), lambda p: p is not None)


async def stream_entries(redis: Redis) -> int:
    """Entries in the event stream(s) of the test prefix."""
    total = 0
    async for key in redis.scan_iter(match=f"{PREFIX}:*".encode()):
        if await redis.type(key) == b"stream" and b"dead" not in key:
            total += await redis.xlen(key)
    return total


class TestSettings:
    def test_secrets_are_split_and_trimmed(self) -> None:
        settings = SegmentWebhookSettings(_env_file=None, webhook_secrets=" a , ,b ")
        assert settings.secrets == ("a", "b")

    def test_blank_secrets_disable(self) -> None:
        assert SegmentWebhookSettings(_env_file=None, webhook_secrets="  ").secrets == ()

    def test_profile_space_needs_a_token(self) -> None:
        with pytest.raises(ValidationError, match="SEGMENT_PROFILE_TOKEN is required"):
            SegmentWebhookSettings(_env_file=None, profile_space_id="spa_1")

    def test_profile_url_must_be_a_base_url(self) -> None:
        with pytest.raises(ValidationError, match="base URL"):
            SegmentWebhookSettings(_env_file=None, profile_url="https://x.example/v1")

    def test_start_up_error_names_the_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("SEGMENT_PROFILE_MAX_ATTEMPTS", "0")
        with pytest.raises(ConfigurationError, match="SEGMENT_PROFILE_MAX_ATTEMPTS"):
            load_settings()
