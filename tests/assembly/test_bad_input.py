"""Every kind of bad assemble request gets a clear 4xx `{error, detail}` and writes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from tests.support.app import make_settings, running_app
from tests.support.redis_server import RedisServer


@pytest.fixture
async def client(redis: Redis, redis_server: RedisServer) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(make_settings(redis_server.url)) as (_, client):
        yield client


async def snapshot(redis: Redis) -> dict[Any, Any]:
    return {key: await redis.dump(key) for key in sorted(await redis.keys("*"))}


@pytest.mark.parametrize(
    ("body", "status", "error", "detail"),
    [
        (b"{not json", 422, "InvalidRequest", "Invalid JSON"),
        (b"[]", 422, "InvalidRequest", "an object"),
        (b'{"template": 42}', 422, "InvalidRequest", "template"),
        (b'{"template": "home", "slots": ["home.hero"]}', 422, "InvalidRequest", "exactly one"),
        (b"{}", 422, "InvalidRequest", "exactly one"),
        (b'{"template": "home", "user": {"id": 7}}', 422, "InvalidRequest", "user.id"),
        (
            b'{"template": "home", "context": {"consent": "maybe"}}',
            422,
            "InvalidRequest",
            "context.consent",
        ),
        (b'{"template": "home", "surprise": 1}', 422, "InvalidRequest", "surprise"),
        (b'{"template": "home", "locale": "xx-XX"}', 422, "UnknownLocale", "xx-XX"),
        (b'{"template": "nope"}', 404, "TemplateNotFound", "nope"),
        (b'{"slots": ["home.hero", "nope.slot"]}', 404, "SlotNotFound", "nope.slot"),
        (b'{"template": "home", "preview": true}', 403, "PreviewDisabled", "BRIDGE_PREVIEW_KEY"),
    ],
)
async def test_bad_request_is_a_clear_4xx_and_changes_nothing(
    client: httpx.AsyncClient, redis: Redis, body: bytes, status: int, error: str, detail: str
) -> None:
    before = await snapshot(redis)
    response = await client.post(
        "/v1/assemble", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == status, response.text
    answer = response.json()
    assert answer["error"] == error
    assert detail in answer["detail"]
    assert await snapshot(redis) == before


async def test_body_over_64_kb_is_413(client: httpx.AsyncClient, redis: Redis) -> None:
    before = await snapshot(redis)
    padding = "x" * (64 * 1024)
    response = await client.post(
        "/v1/assemble", json={"template": "home", "context": {"attributes": {"pad": padding}}}
    )
    assert response.status_code == 413
    assert response.json()["error"] == "PayloadTooLarge"
    assert await snapshot(redis) == before


async def test_streamed_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"template": "home", "context": {"attributes": {"pad": "'
        for _ in range(80):
            yield b"x" * 1024
        yield b'"}}}'

    response = await client.post("/v1/assemble", content=chunks())
    assert response.status_code == 413
    assert response.json()["error"] == "PayloadTooLarge"


async def test_unknown_route_and_method_use_the_error_shape(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["error"] == "NotFound"
    wrong = await client.get("/v1/assemble")
    assert wrong.status_code == 405
    assert wrong.json()["error"] == "MethodNotAllowed"
