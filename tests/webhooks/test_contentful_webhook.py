"""`POST /webhooks/contentful` against the running app and the test Redis, with signed requests.

Every bad input gets a clear 4xx (or a documented 200 "ignored"/"stale"/"duplicate") and leaves
Redis exactly as it was. Payloads are CMA-format webhook bodies built from the demo space.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from redis.asyncio import Redis

from app import AppSettings
from tests.fakes.contentful import FakeContentful
from tests.support.app import make_settings, running_app
from tests.support.demo import demo_items, with_fields
from tests.support.redis_server import RedisServer, free_port
from tests.support.waiting import eventually
from webhooks.contentful.config import ContentfulWebhookSettings
from webhooks.contentful.normalize import Topic, entity_change, payload_target
from webhooks.verification import sign_contentful

PATH = "/webhooks/contentful"
SECRET = "webhook-secret-current-0123456789abcdef0123456789abcdef0123456789ab"
OLD_SECRET = "webhook-secret-previous-0123456789abcdef0123456789abcdef0123456789"
CMA_TYPE = "application/vnd.contentful.management.v1+json"
PUBLISH = "ContentManagement.Entry.publish"
UNPUBLISH = "ContentManagement.Entry.unpublish"
SPACE = "microbridge-demo"
VISITOR = {"template": "home", "context": {"audiences": ["cart_abandoners"]}}
REFERENCE = (
    Path(__file__).resolve().parents[3]
    / "shared"
    / "reference"
    / "contentful"
    / "webhook-payloads-entry-publish-unpublish.json"
)


# --- builders -------------------------------------------------------------------------------


def _link(link_type: str, link_id: str) -> dict[str, Any]:
    return {"sys": {"type": "Link", "linkType": link_type, "id": link_id}}


def cma_entry(
    entry_id: str,
    *,
    revision: int,
    space: str = SPACE,
    environment: str = "master",
    **fields: Any,
) -> dict[str, Any]:
    """A demo entry as an `Entry.publish` webhook body: all locales, CMA sys (whose
    `publishedVersion` counts differently from `revision`, as Contentful's does)."""
    item = copy.deepcopy(demo_items()[entry_id])
    for name, value in fields.items():
        item["fields"][name] = {"en-US": value}
    sys = item["sys"]
    sys.update(
        space=_link("Space", space),
        environment=_link("Environment", environment),
        createdBy=_link("User", "editor-1"),
        updatedBy=_link("User", "editor-1"),
        revision=revision,
        publishedVersion=3 * revision + 1,
        updatedAt="2026-11-20T10:00:00.000Z",
    )
    return {"metadata": {"tags": []}, "sys": sys, "fields": item["fields"]}


def cma_tombstone(entry_id: str, *, revision: int, space: str = SPACE) -> dict[str, Any]:
    """An `Entry.unpublish`/`Entry.delete` webhook body: a `DeletedEntry`."""
    entry_sys = demo_items()[entry_id]["sys"]
    return {
        "sys": {
            "type": "DeletedEntry",
            "id": entry_id,
            "space": _link("Space", space),
            "environment": _link("Environment", "master"),
            "contentType": entry_sys["contentType"],
            "revision": revision,
            "createdAt": entry_sys["createdAt"],
            "updatedAt": "2026-11-21T10:00:00.000Z",
            "deletedAt": "2026-11-21T10:00:00.000Z",
        }
    }


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def signed(
    body: bytes,
    *,
    topic: str | None = PUBLISH,
    secret: str = SECRET,
    timestamp_ms: int | None = None,
    idempotency_key: str | None = None,
    path: str = PATH,
) -> dict[str, str]:
    """Headers of a Contentful delivery of `body`, signed the way Contentful signs."""
    headers = {"content-type": CMA_TYPE}
    if topic is not None:
        headers["x-contentful-topic"] = topic
    if idempotency_key is not None:
        headers["x-contentful-idempotency-key"] = idempotency_key
    stamp = now_ms() if timestamp_ms is None else timestamp_ms
    signature = sign_contentful(
        secret=secret, method="POST", path=path, headers=headers, body=body, timestamp_ms=stamp
    )
    return headers | signature


async def deliver(
    client: httpx.AsyncClient, payload: dict[str, Any], **options: Any
) -> httpx.Response:
    body = orjson.dumps(payload)
    return await client.post(PATH, content=body, headers=signed(body, **options))


async def hero(client: httpx.AsyncClient) -> dict[str, Any]:
    slot: dict[str, Any] = (await client.post("/v1/assemble", json=VISITOR)).json()["slots"][0]
    return slot


async def headline(client: httpx.AsyncClient) -> str:
    return str((await hero(client))["entry"]["fields"]["headline"])


async def snapshot(redis: Redis) -> dict[bytes | str, Any]:
    """Every key with its type and value, to compare before and after a request."""
    state: dict[bytes | str, Any] = {}
    for key in await redis.keys("*"):
        raw_kind = await redis.type(key)
        kind = raw_kind.decode() if isinstance(raw_kind, bytes) else raw_kind
        if kind == "string":
            value: Any = await redis.get(key)
        elif kind == "hash":
            value = await redis.hgetall(key)
        elif kind == "set":
            value = await redis.smembers(key)
        elif kind == "list":
            value = await redis.lrange(key, 0, -1)
        elif kind == "zset":
            value = await redis.zrange(key, 0, -1, withscores=True)
        else:
            value = await redis.dump(key)
        state[key] = (kind, value)
    return state


def with_webhooks(settings: AppSettings, secrets: str = SECRET, **options: Any) -> AppSettings:
    options.setdefault("resync_delay_seconds", 60.0)  # no background sync unless a test wants it
    webhooks = ContentfulWebhookSettings(_env_file=None, secrets=SecretStr(secrets), **options)
    return dataclasses.replace(settings, contentful_webhooks=webhooks)


@asynccontextmanager
async def bridge(
    redis_server: RedisServer, secrets: str = SECRET, **options: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    settings = with_webhooks(make_settings(redis_server.url), secrets, **options)
    async with running_app(settings) as running:
        yield running


@pytest.fixture
async def client(redis: Redis, redis_server: RedisServer) -> AsyncIterator[httpx.AsyncClient]:
    async with bridge(redis_server) as (_, http):
        yield http


# --- publish, unpublish, ordering -------------------------------------------------------------


async def test_signed_publish_is_visible_in_the_next_assemble(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    before = await hero(client)
    response = await deliver(client, cma_entry("hero-cart", revision=3, headline="Webhook fresh"))
    after = await hero(client)  # no wait: the receiving replica patched its snapshot already
    assert response.status_code == 200
    assert response.json() == {
        "status": "applied",
        "topic": PUBLISH,
        "entity": "Entry:hero-cart",
        "revision": 3,
        "version": 2,
    }
    assert before["entry"]["fields"]["headline"] != "Webhook fresh"
    assert after["entry"]["fields"]["headline"] == "Webhook fresh"
    stored = orjson.loads(await redis.hget("mbtest:content:entities", "Entry:hero-cart") or b"")
    assert stored["revision"] == 3, "sys.revision wins over publishedVersion"
    assert await redis.hget("mbtest:content:revisions", "Entry:hero-cart") == b"6"
    metrics = (await client.get("/metrics")).text
    assert 'microbridge_webhook_contentful_total{answer="applied"}' in metrics


async def test_unpublish_removes_the_entry_and_the_variant_stops(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    assert (await hero(client))["variant"] == "hero-cart"
    response = await deliver(client, cma_tombstone("hero-cart", revision=2), topic=UNPUBLISH)
    slot = await hero(client)
    assert response.json()["status"] == "applied"
    assert await redis.hexists("mbtest:content:entities", "Entry:hero-cart") == 0
    assert await redis.hget("mbtest:content:revisions", "Entry:hero-cart") == b"5"
    assert slot["variant"] != "hero-cart"
    assert slot["entry"]["id"] != "hero-cart"


async def test_archive_removes_like_unpublish(client: httpx.AsyncClient, redis: Redis) -> None:
    archived = cma_entry("hero-cart", revision=2)
    del archived["sys"]["revision"]
    archived["sys"].update(publishedCounter=2, archivedVersion=9, version=10)
    response = await deliver(client, archived, topic="ContentManagement.Entry.archive")
    assert response.json()["status"] == "applied"
    assert await redis.hexists("mbtest:content:entities", "Entry:hero-cart") == 0


async def test_replayed_idempotency_key_is_a_duplicate_and_changes_nothing(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    payload = cma_entry("hero-cart", revision=3, headline="Once")
    first = await deliver(client, payload, idempotency_key="delivery-1")
    state = await snapshot(redis)
    again = await deliver(client, payload, idempotency_key="delivery-1")
    assert first.json()["status"] == "applied"
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert await snapshot(redis) == state


async def test_replayed_body_without_a_key_is_a_duplicate(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    body = orjson.dumps(cma_entry("cta-cart", revision=5, label="Go"))
    first = await client.post(PATH, content=body, headers=signed(body))
    state = await snapshot(redis)
    again = await client.post(PATH, content=body, headers=signed(body))
    assert (first.json()["status"], again.json()["status"]) == ("applied", "duplicate")
    assert await snapshot(redis) == state


async def test_older_revision_after_a_newer_one_is_stale(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    await deliver(client, cma_entry("hero-cart", revision=5, headline="Newest"))
    state = await snapshot(redis)
    late = await deliver(client, cma_entry("hero-cart", revision=4, headline="Older"))
    assert late.status_code == 200
    assert late.json()["status"] == "stale"
    assert await snapshot(redis) == state
    assert await headline(client) == "Newest"


async def test_older_than_the_synced_revision_is_stale(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    state = await snapshot(redis)  # the demo sync stored hero-cart at revision 2
    late = await deliver(client, cma_entry("hero-cart", revision=2, headline="Old"))
    assert late.json()["status"] == "stale"
    assert await snapshot(redis) == state


async def test_publish_after_a_delete_of_a_newer_revision_is_stale(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    await deliver(client, cma_entry("hero-cart", revision=4, headline="Before delete"))
    deleted = await deliver(
        client, cma_tombstone("hero-cart", revision=4), topic="ContentManagement.Entry.delete"
    )
    state = await snapshot(redis)
    same = await deliver(client, cma_entry("hero-cart", revision=4, headline="Zombie"))
    older = await deliver(client, cma_entry("hero-cart", revision=3, headline="Zombie"))
    assert deleted.json()["status"] == "applied"
    assert [same.json()["status"], older.json()["status"]] == ["stale", "stale"]
    assert await snapshot(redis) == state
    republished = await deliver(client, cma_entry("hero-cart", revision=5, headline="Back"))
    assert republished.json()["status"] == "applied"
    assert await headline(client) == "Back"


async def test_asset_publish_is_applied(client: httpx.AsyncClient, redis: Redis) -> None:
    asset = copy.deepcopy(demo_items()["asset-hero-cart"])
    asset["sys"].update(environment=_link("Environment", "master"), revision=7)
    asset["fields"]["title"] = {"en-US": "New picture"}
    response = await deliver(client, asset, topic="ContentManagement.Asset.publish")
    stored = orjson.loads(
        await redis.hget("mbtest:content:entities", "Asset:asset-hero-cart") or b""
    )
    assert response.json()["status"] == "applied"
    assert stored["fields"]["title"] == {"en-US": "New picture"}


async def test_signed_path_with_a_query_string_verifies(client: httpx.AsyncClient) -> None:
    body = orjson.dumps(cma_entry("hero-cart", revision=3, headline="Query"))
    target = f"{PATH}?source=contentful&note=a%20b"
    response = await client.post(target, content=body, headers=signed(body, path=target))
    assert response.json()["status"] == "applied"


# --- acknowledged and ignored ---------------------------------------------------------------


@pytest.mark.parametrize(
    "topic",
    [
        "ContentManagement.Entry.auto_save",
        "ContentManagement.Entry.save",
        "ContentManagement.Entry.create",
        "ContentManagement.Entry.unarchive",
        "ContentManagement.Task.create",
        "Something.Else.entirely",
    ],
)
async def test_other_topics_are_acknowledged_and_ignored(
    topic: str, client: httpx.AsyncClient, redis: Redis
) -> None:
    state = await snapshot(redis)
    response = await deliver(client, cma_entry("hero-cart", revision=9, headline="X"), topic=topic)
    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    assert response.json()["topic"] == topic
    assert await snapshot(redis) == state


@pytest.mark.parametrize(
    ("space", "environment"), [("another-space", "master"), (SPACE, "staging")]
)
async def test_payload_of_another_space_or_environment_is_ignored(
    space: str, environment: str, client: httpx.AsyncClient, redis: Redis
) -> None:
    state = await snapshot(redis)
    payload = cma_entry("hero-cart", revision=9, space=space, environment=environment)
    response = await deliver(client, payload)
    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    assert repr(space) in response.json()["detail"]
    assert await snapshot(redis) == state


async def test_recorded_contentful_payloads_of_another_space_are_ignored(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    recorded = json.loads(REFERENCE.read_text("utf-8"))
    state = await snapshot(redis)
    answers = [
        (await deliver(client, recorded[topic], topic=topic)).json()
        for topic in (PUBLISH, UNPUBLISH)
    ]
    assert [a["status"] for a in answers] == ["ignored", "ignored"]
    assert await snapshot(redis) == state


def test_recorded_contentful_payloads_normalize() -> None:
    recorded = json.loads(REFERENCE.read_text("utf-8"))
    publish = entity_change(recorded[PUBLISH], Topic(PUBLISH, "Entry", "publish"))
    unpublish = entity_change(recorded[UNPUBLISH], Topic(UNPUBLISH, "Entry", "unpublish"))
    assert publish.entity is not None
    assert (publish.key, publish.revision, publish.rank) == ("Entry:4daRnfRhQ1spRmTrqeP2M6", 5, 10)
    assert publish.entity.content_type == "news"
    assert publish.entity.fields["title"] == {"en-US": "test"}
    assert (unpublish.key, unpublish.entity, unpublish.rank) == (
        "Entry:4fTQlBcDyPBvUIwpjm96JU",
        None,
        5,
    )
    assert str(payload_target(recorded[PUBLISH])) == "space '5v6w5j61tndm', environment 'crn-2802'"


# --- bad input: 4xx and nothing changes ------------------------------------------------------

Headers = Callable[[bytes], dict[str, str]]


def _without_signature(body: bytes) -> dict[str, str]:
    return {"content-type": CMA_TYPE, "x-contentful-topic": PUBLISH}


def _malformed_signature(body: bytes) -> dict[str, str]:
    return signed(body) | {"x-contentful-signature": "not-hex"}


def _expired(body: bytes) -> dict[str, str]:
    return signed(body, timestamp_ms=now_ms() - 31_000)


def _from_the_future(body: bytes) -> dict[str, str]:
    return signed(body, timestamp_ms=now_ms() + 31_000)


def _wrong_secret(body: bytes) -> dict[str, str]:
    return signed(body, secret="someone-else")


def _removed_old_secret(body: bytes) -> dict[str, str]:
    return signed(body, secret=OLD_SECRET)


def _tampered_topic(body: bytes) -> dict[str, str]:
    return signed(body) | {"x-contentful-topic": UNPUBLISH}


def _missing_topic(body: bytes) -> dict[str, str]:
    return signed(body, topic=None)


REJECTED: list[tuple[str, Headers, int, str]] = [
    ("missing signature", _without_signature, 401, "SignatureMissing"),
    ("malformed signature", _malformed_signature, 401, "SignatureMalformed"),
    ("expired timestamp", _expired, 401, "SignatureExpired"),
    ("timestamp from the future", _from_the_future, 401, "SignatureExpired"),
    ("wrong secret", _wrong_secret, 401, "SignatureInvalid"),
    ("old secret after rotation", _removed_old_secret, 401, "SignatureInvalid"),
    ("signed topic changed", _tampered_topic, 401, "SignatureInvalid"),
    ("missing topic", _missing_topic, 400, "InvalidPayload"),
]


@pytest.mark.parametrize(
    ("make_headers", "status", "error"),
    [pytest.param(h, s, e, id=name) for name, h, s, e in REJECTED],
)
async def test_bad_signatures_are_rejected_and_change_nothing(
    make_headers: Headers, status: int, error: str, client: httpx.AsyncClient, redis: Redis
) -> None:
    body = orjson.dumps(cma_entry("hero-cart", revision=9, headline="Forged"))
    state = await snapshot(redis)
    response = await client.post(PATH, content=body, headers=make_headers(body))
    assert response.status_code == status
    assert response.json()["error"] == error
    assert response.json()["detail"]
    assert await snapshot(redis) == state


async def test_tampered_body_is_rejected(client: httpx.AsyncClient, redis: Redis) -> None:
    body = orjson.dumps(cma_entry("hero-cart", revision=9, headline="Signed"))
    headers = signed(body)
    state = await snapshot(redis)
    response = await client.post(PATH, content=body.replace(b"Signed", b"Forged"), headers=headers)
    assert (response.status_code, response.json()["error"]) == (401, "SignatureInvalid")
    assert await snapshot(redis) == state


def _no_sys_id(payload: dict[str, Any]) -> None:
    del payload["sys"]["id"]


def _content_type_sys(payload: dict[str, Any]) -> None:
    payload["sys"]["type"] = "ContentType"


def _tombstone_on_publish(payload: dict[str, Any]) -> None:
    payload["sys"]["type"] = "DeletedEntry"


def _asset_on_entry_topic(payload: dict[str, Any]) -> None:
    payload["sys"]["type"] = "Asset"


def _no_revision(payload: dict[str, Any]) -> None:
    for name in ("revision", "publishedVersion", "version", "publishedCounter"):
        payload["sys"].pop(name, None)


def _text_revision(payload: dict[str, Any]) -> None:
    payload["sys"]["revision"] = "7"


def _fields_not_by_locale(payload: dict[str, Any]) -> None:
    payload["fields"]["headline"] = "no locale map"


def _no_space(payload: dict[str, Any]) -> None:
    del payload["sys"]["space"]


def _sys_not_an_object(payload: dict[str, Any]) -> None:
    payload["sys"] = ["Entry"]


SHAPES: list[Callable[[dict[str, Any]], None]] = [
    _no_sys_id,
    _content_type_sys,
    _tombstone_on_publish,
    _asset_on_entry_topic,
    _no_revision,
    _text_revision,
    _fields_not_by_locale,
    _no_space,
    _sys_not_an_object,
]


@pytest.mark.parametrize("break_shape", SHAPES, ids=lambda f: f.__name__.strip("_"))
async def test_wrong_payload_shapes_are_400(
    break_shape: Callable[[dict[str, Any]], None], client: httpx.AsyncClient, redis: Redis
) -> None:
    payload = cma_entry("hero-cart", revision=9, headline="Broken")
    break_shape(payload)
    state = await snapshot(redis)
    response = await deliver(client, payload)
    assert response.status_code == 400
    assert response.json()["error"] == "InvalidPayload"
    assert await snapshot(redis) == state


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1, 2]", b'"text"', b"\xff\xfe"], ids=repr)
async def test_malformed_json_is_400(body: bytes, client: httpx.AsyncClient, redis: Redis) -> None:
    state = await snapshot(redis)
    response = await client.post(PATH, content=body, headers=signed(body))
    assert response.status_code == 400
    assert response.json()["error"] == "InvalidPayload"
    assert await snapshot(redis) == state


async def test_body_over_one_megabyte_is_413(client: httpx.AsyncClient, redis: Redis) -> None:
    payload = cma_entry("hero-cart", revision=9, headline="x" * (1024 * 1024))
    body = orjson.dumps(payload)
    state = await snapshot(redis)
    response = await client.post(PATH, content=body, headers=signed(body))
    assert response.status_code == 413
    assert response.json()["error"] == "PayloadTooLarge"
    assert await snapshot(redis) == state


async def test_no_secret_configured_disables_the_endpoint(
    redis: Redis, redis_server: RedisServer
) -> None:
    async with running_app(make_settings(redis_server.url)) as (_, client):
        state = await snapshot(redis)
        body = orjson.dumps(cma_entry("hero-cart", revision=9))
        response = await client.post(PATH, content=body, headers=signed(body))
        assert await snapshot(redis) == state
    assert response.status_code == 404
    assert response.json()["error"] == "WebhookDisabled"


async def test_both_secrets_are_accepted_during_rotation(
    redis: Redis, redis_server: RedisServer
) -> None:
    async with bridge(redis_server, f"{SECRET}, {OLD_SECRET}") as (_, client):
        new = await deliver(client, cma_entry("hero-cart", revision=3, headline="New"))
        old = await deliver(
            client, cma_entry("hero-cart", revision=4, headline="Old"), secret=OLD_SECRET
        )
        forged = await deliver(client, cma_entry("hero-cart", revision=5), secret="forged")
    assert [new.json()["status"], old.json()["status"]] == ["applied", "applied"]
    assert forged.status_code == 401


# --- store outage -----------------------------------------------------------------------------


async def test_store_down_is_503_and_the_retry_is_applied_later() -> None:
    own = RedisServer()
    own.start()
    payload = cma_entry("hero-cart", revision=3, headline="After the outage")
    try:
        async with bridge(own) as (_, client):
            own.stop()
            down = await deliver(client, payload, idempotency_key="delivery-7")
            own.start()
            retried = await deliver(client, payload, idempotency_key="delivery-7")
    finally:
        own.stop()
    assert down.status_code == 503
    assert down.json()["error"] == "WebhookStoreUnavailable"
    assert retried.json()["status"] == "applied", "no dedupe key was left by the failed try"


async def test_dead_store_is_503() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings = with_webhooks(make_settings(dead))
    async with running_app(settings, ready=False) as (_, client):
        response = await deliver(client, cma_entry("hero-cart", revision=3))
    assert response.status_code == 503


# --- debounced delta sync ---------------------------------------------------------------------


@pytest.fixture
def contentful() -> Iterator[FakeContentful]:
    with FakeContentful(space_id=SPACE, pages=[list(demo_items().values())]) as fake:
        yield fake


def synced_from(fake: FakeContentful, redis_server: RedisServer, delay: float) -> AppSettings:
    settings = make_settings(
        redis_server.url, space_id=fake.space_id, access_token=fake.token, cda_url=fake.url
    )
    return with_webhooks(settings, resync_delay_seconds=delay, resync_max_delay_seconds=10)


def delta_syncs(fake: FakeContentful) -> int:
    return sum(
        1 for path, query in fake.requests if path.endswith("/sync") and "sync_token" in query
    )


async def test_lost_webhook_is_healed_by_the_debounced_delta_sync(
    contentful: FakeContentful, redis: Redis, redis_server: RedisServer
) -> None:
    async with running_app(synced_from(contentful, redis_server, 0.2)) as (_, client):
        contentful.publish(with_fields("hero-cart", headline="Its webhook was lost"))
        cta = with_fields("cta-cart", label="Delivered by webhook")
        contentful.publish(cta)
        response = await deliver(
            client,
            cma_entry("cta-cart", revision=cta["sys"]["revision"], label="Delivered by webhook"),
        )
        page = (await client.post("/v1/assemble", json=VISITOR)).json()["slots"]

        async def healed() -> bool:
            return await headline(client) == "Its webhook was lost"

        await eventually(healed)
    assert response.json()["status"] == "applied"
    assert page[1]["entry"]["fields"]["label"] == "Delivered by webhook"


async def test_a_burst_of_webhooks_causes_one_delta_sync(
    contentful: FakeContentful, redis: Redis, redis_server: RedisServer
) -> None:
    async with running_app(synced_from(contentful, redis_server, 0.5)) as (_, client):
        before = delta_syncs(contentful)
        answers = [
            (await deliver(client, cma_entry("hero-cart", revision=r, headline=f"#{r}"))).json()
            for r in range(3, 8)
        ]

        async def synced() -> bool:
            return delta_syncs(contentful) > before

        await eventually(synced)
        await asyncio.sleep(1.0)  # a second sync, if any, would have started by now
        after = delta_syncs(contentful)
    assert [a["status"] for a in answers] == ["applied"] * 5
    assert after - before == 1


async def test_content_type_change_schedules_a_delta_sync(
    contentful: FakeContentful, redis: Redis, redis_server: RedisServer
) -> None:
    content_type = {
        "sys": {
            "type": "ContentType",
            "id": "hero",
            "space": _link("Space", SPACE),
            "environment": _link("Environment", "master"),
            "version": 4,
        },
        "name": "Hero",
        "fields": [],
    }
    async with running_app(synced_from(contentful, redis_server, 0.1)) as (_, client):
        before = delta_syncs(contentful)
        contentful.publish(with_fields("hero-cart", headline="Brought by the sync"))
        response = await deliver(
            client, content_type, topic="ContentManagement.ContentType.publish"
        )

        async def synced() -> bool:
            return await headline(client) == "Brought by the sync"

        await eventually(synced)
    assert response.json()["status"] == "resync"
    assert delta_syncs(contentful) > before


async def test_a_late_publish_cannot_resurrect_what_the_sync_deleted(
    contentful: FakeContentful, redis: Redis, redis_server: RedisServer
) -> None:
    revision = demo_items()["hero-cart"]["sys"]["revision"]
    async with running_app(synced_from(contentful, redis_server, 30)) as (app, client):
        contentful.delete("hero-cart")
        result = await app.state.services.integration.sync.run()
        late = await deliver(client, cma_entry("hero-cart", revision=revision, headline="Zombie"))
        entity = await redis.hget("mbtest:content:entities", "Entry:hero-cart")
    assert result.deletions == 1
    assert late.json()["status"] == "stale"
    assert entity is None


# --- bulk publishes ---------------------------------------------------------------------------


async def test_fifty_concurrent_deliveries_of_a_release_all_apply_without_a_5xx(
    redis_server: RedisServer, redis: Redis
) -> None:
    """A release publishes many entries at once: the guard is per entity, so none aborts
    another (the old global WATCH answered ~10% of such a burst with 503)."""
    bodies = []
    for n in range(50):
        payload = cma_entry("hero-cart", revision=1, headline=f"Release item {n}")
        payload["sys"]["id"] = f"release-{n}"
        bodies.append(payload)
    async with bridge(redis_server) as (app, client):
        answers = await asyncio.gather(*(deliver(client, body) for body in bodies))
        library = app.state.services.integration.holder.library
        visible = [library.resolver.entry(f"release-{n}", "en-US") for n in range(50)]
    assert [a.status_code for a in answers] == [200] * 50
    assert {a.json()["status"] for a in answers} == {"applied"}
    assert all(entry is not None for entry in visible)
    stored = await redis.hkeys("mbtest:content:entities")
    assert {f"Entry:release-{n}".encode() for n in range(50)} <= set(stored)
