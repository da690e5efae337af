"""The Segment-compatible tracking API over HTTP: what it accepts, what it refuses, and how.

Every refused request answers a 4xx `{"error", "detail"}` and leaves Redis as it was.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from tests.segment_sync.support import snapshot
from tests.segment_sync.tracking_support import KEYS, OTHER_KEY, WRITE_KEY, bridge
from tests.support.redis_server import RedisServer

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "segment"
CAPTURED = json.loads((REFERENCE / "analytics-python-2.3.4-captured-requests.json").read_text())
Bridge = tuple[FastAPI, httpx.AsyncClient]


def reference(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((REFERENCE / name).read_text("utf-8"))
    return document


def track(**fields: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Product Viewed", "anonymousId": "a-1", **fields}


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


@pytest.fixture
async def api(redis: Redis, redis_server: RedisServer) -> AsyncIterator[Bridge]:
    async with bridge(redis_server.url, consumer_enabled=False) as running:
        yield running


async def stored(redis: Redis) -> list[dict[str, Any]]:
    entries: Any = await redis.xrange(KEYS.events_stream)
    return [orjson.loads(fields[b"m"]) for _, fields in entries]


async def post(client: httpx.AsyncClient, path: str, body: Any, **headers: str) -> httpx.Response:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    headers.setdefault("content-type", "application/json")
    return await client.post(path, content=raw, headers=headers)


# --- what the real client and the docs send ---------------------------------------------------


@pytest.mark.parametrize("index", range(len(CAPTURED["requests"])))
async def test_captured_client_requests_are_accepted(api: Bridge, redis: Redis, index: int) -> None:
    _, client = api
    captured = CAPTURED["requests"][index]
    body = captured["raw_body"].encode().replace(b"YOUR_WRITE_KEY", WRITE_KEY.encode())
    headers = {k.lower(): v for k, v in captured["headers"].items()}
    if captured["gzip"]:
        body = gzip.compress(body)
    response = await post(client, captured["path"], body, **headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    sent = json.loads(captured["raw_body"])["batch"]
    messages = await stored(redis)
    assert [m["messageId"] for m in messages] == [m["messageId"] for m in sent]
    for message, original in zip(messages, sent, strict=True):
        assert message["originalTimestamp"] == original["timestamp"]
        assert message["userId"] == original["userId"]
        assert message["anonymousId"] == original["anonymousId"]
        assert "writeKey" not in message
        assert message["receivedAt"].endswith("Z")


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/v1/identify", "http-api-identify.json"),
        ("/v1/track", "http-api-track.json"),
        ("/v1/page", "http-api-page.json"),
        ("/v1/screen", "http-api-screen.json"),
        ("/v1/group", "http-api-group.json"),
        ("/v1/alias", "http-api-alias.json"),
        ("/v1/identify", "http-api-identify-with-integrations.json"),
    ],
)
async def test_documented_single_calls_are_accepted(
    api: Bridge, redis: Redis, path: str, name: str
) -> None:
    _, client = api
    body = reference(name) | {"writeKey": WRITE_KEY}
    response = await post(client, path, body)
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    (message,) = await stored(redis)
    assert message["type"] == path.rsplit("/", 1)[1]
    assert message["timestamp"] == body["timestamp"], "Z timestamps stay as they are"
    assert message["messageId"].startswith("mb-"), "a messageId is generated when absent"


async def test_documented_batch_with_odd_timestamps_and_shared_context(
    api: Bridge, redis: Redis
) -> None:
    _, client = api
    body = reference("http-api-batch.json") | {"writeKey": WRITE_KEY}
    response = await post(client, "/v1/batch", body)
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    messages = await stored(redis)
    assert [m["type"] for m in messages] == ["identify", "track", "identify", "track"]
    assert messages[2]["timestamp"] == "2015-02-02T00:30:08.276Z", "2015-2-02 read leniently"
    assert all(m["context"]["device"]["type"] == "phone" for m in messages)


async def test_write_key_as_basic_auth_user(api: Bridge, redis: Redis) -> None:
    _, client = api
    response = await post(client, "/v1/track", track(), authorization=basic(OTHER_KEY))
    assert response.status_code == 200, response.text
    assert len(await stored(redis)) == 1


async def test_sent_at_corrects_the_client_clock(api: Bridge, redis: Redis) -> None:
    app, client = api
    app.state.services.segment_sync.tracking.clock = lambda: 1_700_000_100.0  # 2023-11-14T22:15:00Z
    body = {
        "writeKey": WRITE_KEY,
        "sentAt": "2023-11-14T22:16:40.000+00:00",  # the client's clock is 100 s fast
        "batch": [track(timestamp="2023-11-14T22:16:30.000+00:00")],
    }
    assert (await post(client, "/v1/batch", body)).status_code == 200
    (message,) = await stored(redis)
    assert message["timestamp"] == "2023-11-14T22:14:50.000Z"
    assert message["originalTimestamp"] == "2023-11-14T22:16:30.000+00:00"
    assert message["receivedAt"] == "2023-11-14T22:15:00.000Z"


# --- partial rejection -------------------------------------------------------------------------


async def test_invalid_messages_are_rejected_with_their_index_and_the_rest_kept(
    api: Bridge, redis: Redis
) -> None:
    _, client = api
    batch = [
        track(messageId="ok-0"),
        {"type": "track", "event": "No ids", "messageId": "bad-1"},
        {"type": "track", "anonymousId": "a-2", "messageId": "bad-2"},
        track(messageId="ok-3", userId=None),
        track(messageId="bad-4", timestamp="yesterday"),
        track(messageId="bad-5", properties={"blob": "x" * 40_000}),
        {"type": "shout", "anonymousId": "a", "messageId": "bad-6"},
        "not an object",
    ]
    response = await post(client, "/v1/batch", {"writeKey": WRITE_KEY, "batch": batch})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["success"] is True
    assert answer["accepted"] == 2
    rejected = {r["index"]: r for r in answer["rejected"]}
    assert sorted(rejected) == [1, 2, 4, 5, 6, 7]
    assert "userId or an anonymousId" in rejected[1]["detail"]
    assert "event name" in rejected[2]["detail"]
    assert "ISO-8601" in rejected[4]["detail"]
    assert "32768 byte limit" in rejected[5]["detail"]
    assert "type 'shout'" in rejected[6]["detail"]
    assert rejected[7]["messageId"] is None
    assert rejected[2]["messageId"] == "bad-2"
    assert [m["messageId"] for m in await stored(redis)] == ["ok-0", "ok-3"]


async def test_a_batch_of_only_invalid_messages_is_refused(api: Bridge, redis: Redis) -> None:
    _, client = api
    before = await snapshot(redis)
    batch = [{"type": "track", "event": "x"}, {"type": "page"}]
    response = await post(client, "/v1/batch", {"writeKey": WRITE_KEY, "batch": batch})
    assert response.status_code == 400
    answer = response.json()
    assert answer["error"] == "MessagesRejected"
    assert [r["index"] for r in answer["rejected"]] == [0, 1]
    assert await snapshot(redis) == before


async def test_empty_batch_is_a_success_that_stores_nothing(api: Bridge, redis: Redis) -> None:
    _, client = api
    response = await post(client, "/v1/batch", {"writeKey": WRITE_KEY, "batch": []})
    assert response.json() == {"success": True}
    assert await stored(redis) == []


# --- refused requests --------------------------------------------------------------------------

BOMB = gzip.compress(
    b'{"writeKey": "' + WRITE_KEY.encode() + b'", "batch": [' + b" " * 2_000_000 + b"]}"
)


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "error", "detail"),
    [
        ("/v1/track", track(), {}, 401, "WriteKeyInvalid", "write key is required"),
        ("/v1/track", track(writeKey="nope"), {}, 401, "WriteKeyInvalid", "not valid"),
        ("/v1/track", track(writeKey=WRITE_KEY), {"authorization": basic("nope")}, 401,
         "WriteKeyInvalid", "not valid"),
        ("/v1/batch", b"{not json", {}, 400, "InvalidPayload", "not valid JSON"),
        ("/v1/batch", b"[1, 2]", {}, 400, "InvalidPayload", "JSON object"),
        ("/v1/batch", {"writeKey": WRITE_KEY}, {}, 400, "InvalidPayload", "'batch' list"),
        ("/v1/batch", {"writeKey": WRITE_KEY, "batch": [track()] * 2501}, {}, 400,
         "TooManyMessages", "2500"),
        ("/v1/track", {"writeKey": WRITE_KEY, "anonymousId": "a"}, {}, 400, "InvalidMessage",
         "event name"),
        ("/v1/identify", {"writeKey": WRITE_KEY, "userId": None, "anonymousId": None}, {}, 400,
         "InvalidMessage", "userId or an anonymousId"),
        ("/v1/alias", {"writeKey": WRITE_KEY, "userId": "u"}, {}, 400, "InvalidMessage",
         "previousId"),
        ("/v1/track", track(writeKey=WRITE_KEY, properties={"x": "y" * 40_000}), {}, 413,
         "PayloadTooLarge", "32768 byte limit"),
        ("/v1/batch", b"x" * (500 * 1024 + 1), {}, 413, "PayloadTooLarge", "512000"),
        ("/v1/batch", BOMB, {"content-encoding": "gzip"}, 413, "PayloadTooLarge",
         "once decompressed"),
        ("/v1/batch", b"\x1f\x8b not gzip", {"content-encoding": "gzip"}, 400, "InvalidPayload",
         "gzip"),
        ("/v1/batch", gzip.compress(b'{"batch": []}')[:-6], {"content-encoding": "gzip"}, 400,
         "InvalidPayload", "truncated"),
        ("/v1/batch", b"{}", {"content-encoding": "br"}, 415, "UnsupportedEncoding", "gzip"),
    ],
)  # fmt: skip
async def test_bad_requests_are_refused_and_change_nothing(
    api: Bridge,
    redis: Redis,
    path: str,
    body: Any,
    headers: dict[str, str],
    status: int,
    error: str,
    detail: str,
) -> None:
    _, client = api
    before = await snapshot(redis)
    response = await post(client, path, body, **headers)
    assert response.status_code == status, response.text
    answer = response.json()
    assert answer["error"] == error
    assert detail in answer["detail"]
    assert await snapshot(redis) == before


async def test_disabled_without_write_keys(redis: Redis, redis_server: RedisServer) -> None:
    async with bridge(redis_server.url, write_keys=None, consumer_enabled=False) as (_, client):
        before = await snapshot(redis)
        response = await post(client, "/v1/batch", {"writeKey": WRITE_KEY, "batch": [track()]})
        assert response.status_code == 404
        assert response.json()["error"] == "TrackingDisabled"
        assert await snapshot(redis) == before
