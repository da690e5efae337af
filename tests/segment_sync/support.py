"""Helpers for Segment tests: app settings, signed webhook posts, Redis snapshots, polling."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any, TypeVar

import httpx
import orjson
from redis.asyncio import Redis

from app import AppSettings
from core.redis import Keys
from segment_sync.webhook_config import SegmentWebhookSettings
from tests.support.app import make_settings
from tests.support.waiting import eventually
from webhooks.verification import sign_segment

T = TypeVar("T")

OLD_SECRET = "whsec-old-0f8e2c"
NEW_SECRET = "whsec-new-7a1d93"
PREFIX = "mbtest"


def segment_settings(**values: Any) -> SegmentWebhookSettings:
    values.setdefault("webhook_secrets", f"{OLD_SECRET},{NEW_SECRET}")
    return SegmentWebhookSettings(_env_file=None, **values)


def app_settings(redis_url: str | None, segment: SegmentWebhookSettings) -> AppSettings:
    return dataclasses.replace(make_settings(redis_url, prefix=PREFIX), segment_webhook=segment)


async def post_signed(
    client: httpx.AsyncClient,
    body: Any,
    *,
    secret: str | None = NEW_SECRET,
    signature: str | None = None,
) -> httpx.Response:
    """POST `body` (JSON-encoded unless bytes) with the X-Signature Segment would send."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = {"content-type": "application/json"}
    if signature is None and secret is not None:
        signature = sign_segment(secret=secret, body=raw)
    if signature is not None:
        headers["x-signature"] = signature
    return await client.post("/webhooks/segment", content=raw, headers=headers)


def message_id() -> str:
    return f"test-{uuid.uuid4()}"


def personas(computation_class: str, key: str) -> dict[str, Any]:
    return {
        "personas": {
            "computation_class": computation_class,
            "computation_id": "aud_2BkvV3NtgbsJ7bHkhZyxZzDtXwS",
            "computation_key": key,
            "namespace": "spa_w5pNbLxqbVsyRNjh4AeRaC",
            "space_id": "spa_w5pNbLxqbVsyRNjh4AeRaC",
        }
    }


def engage_identify(key: str, value: Any, **ids: str) -> dict[str, Any]:
    return {
        "type": "identify",
        "messageId": message_id(),
        "timestamp": "2026-11-25T12:00:00.000Z",
        "context": personas("audience", key),
        "traits": {key: value},
        **ids,
    }


def engage_track(name: str, key: str, **ids: str) -> dict[str, Any]:
    return {
        "type": "track",
        "event": name,
        "messageId": message_id(),
        "timestamp": "2026-11-25T12:00:00.000Z",
        "context": personas("audience", key),
        "properties": {"audience_key": key, key: name == "Audience Entered"},
        **ids,
    }


async def assemble_home(client: httpx.AsyncClient, **user: str) -> dict[str, dict[str, Any]]:
    response = await client.post("/v1/assemble", json={"template": "home", "user": user})
    assert response.status_code == 200, response.text
    return {slot["slot"]: slot for slot in response.json()["slots"]}


async def snapshot(redis: Redis) -> dict[bytes, Any]:
    """Every key of the test prefix except the content store, with its data.

    Streams are compared by their entries (a consumer's idle read changes its group metadata),
    everything else by `DUMP`.
    """
    found: dict[bytes, Any] = {}
    async for key in redis.scan_iter(match=f"{PREFIX}:*".encode()):
        if key.startswith(f"{PREFIX}:content:".encode()):
            continue
        if await redis.type(key) == b"stream":
            found[key] = await redis.xrange(key)
        else:
            found[key] = await redis.dump(key)
    return found


async def drained(redis: Redis) -> bool:
    """Whether every consumer group has read and acknowledged every entry of the stream."""
    stream = Keys(PREFIX).events_stream
    if not await redis.exists(stream):
        return True
    groups = await redis.xinfo_groups(stream)
    return bool(groups) and all(g["pending"] == 0 and g["lag"] == 0 for g in groups)


async def settle(redis: Redis) -> None:
    """Until the in-process consumer has applied everything enqueued so far."""
    await eventually(lambda: drained(redis), bool)
