"""What browsers, probes and operators see over HTTP: 405 Allow, HEAD, metrics labels, CORS,
`text/plain` tracking bodies, the offline API page (issue 10, items 7, 8 and 10)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import orjson
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from core.settings import ServiceSettings
from tests.segment_sync.tracking_support import WRITE_KEY, bridge_settings, events_settings
from tests.support.app import running_app
from tests.support.redis_server import RedisServer

SHOP = "https://shop.example.com"
PAGE = {"template": "home", "user": {"anonymousId": "browser-1"}}


@asynccontextmanager
async def bridge(
    redis_server: RedisServer, **service: object
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    settings = bridge_settings(redis_server.url, events_settings())
    values = {**settings.service.model_dump(), "log_level": "warning", **service}
    settings = dataclasses.replace(settings, service=ServiceSettings(_env_file=None, **values))
    async with running_app(settings) as running:
        yield running


def preflight(origin: str, method: str = "POST", headers: str = "content-type") -> dict[str, str]:
    return {
        "origin": origin,
        "access-control-request-method": method,
        "access-control-request-headers": headers,
    }


async def test_a_wrong_method_gets_json_405_with_allow(
    redis: Redis, redis_server: RedisServer
) -> None:
    async with bridge(redis_server) as (_, client):
        answer = await client.delete("/healthz")
        assemble = await client.get("/v1/assemble")
    assert answer.status_code == 405
    assert set(answer.headers["allow"].split(", ")) == {"GET", "HEAD"}
    assert answer.json() == {"error": "MethodNotAllowed", "detail": "Method Not Allowed"}
    assert assemble.status_code == 405
    assert assemble.headers["allow"] == "POST"


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_probes_answer_head(redis: Redis, redis_server: RedisServer, path: str) -> None:
    async with bridge(redis_server) as (_, client):
        answer = await client.head(path)
    assert answer.status_code == 200
    assert answer.content == b""


def _assemble_count(route: str) -> float:
    labels = {"route": route, "method": "POST", "status": "2xx"}
    return REGISTRY.get_sample_value("microbridge_request_seconds_count", labels) or 0.0


async def test_metrics_label_assemble_by_its_route(redis: Redis, redis_server: RedisServer) -> None:
    before = _assemble_count("/v1/assemble"), _assemble_count("unmatched")
    async with bridge(redis_server) as (_, client):
        assert (await client.post("/v1/assemble", json=PAGE)).status_code == 200
        exposition = (await client.get("/metrics")).text
    assert _assemble_count("/v1/assemble") == before[0] + 1
    assert _assemble_count("unmatched") == before[1]
    assert 'route="/v1/assemble"' in exposition


async def test_cors_is_closed_by_default(redis: Redis, redis_server: RedisServer) -> None:
    async with bridge(redis_server) as (_, client):
        refused = await client.options("/v1/assemble", headers=preflight(SHOP))
        answer = await client.post("/v1/assemble", json=PAGE, headers={"origin": SHOP})
    assert refused.status_code == 403
    assert refused.json()["error"] == "CORSRequestRefused"
    assert "BRIDGE_CORS_ORIGINS" in refused.json()["detail"]
    assert "access-control-allow-origin" not in refused.headers
    assert answer.status_code == 200
    assert "access-control-allow-origin" not in answer.headers


@pytest.mark.parametrize("path", ["/v1/assemble", "/v1/batch", "/v1/track"])
async def test_allowed_origins_get_cached_preflights_without_credentials(
    redis: Redis, redis_server: RedisServer, path: str
) -> None:
    async with bridge(redis_server, cors_origins=f"{SHOP},https://m.shop.example.com") as (
        _,
        client,
    ):
        ok = await client.options(path, headers=preflight(SHOP, headers="Content-Type"))
        other = await client.options(path, headers=preflight("https://evil.example"))
        put = await client.options(path, headers=preflight(SHOP, method="PUT"))
        cookie = await client.options(path, headers=preflight(SHOP, headers="x-custom"))
    assert ok.status_code == 204
    assert ok.headers["access-control-allow-origin"] == SHOP
    assert ok.headers["access-control-allow-methods"] == "POST"
    assert ok.headers["access-control-max-age"] == "600"
    assert "content-type" in ok.headers["access-control-allow-headers"]
    assert "access-control-allow-credentials" not in ok.headers
    assert ok.headers["vary"] == "Origin"
    for refused in (other, put, cookie):
        assert refused.status_code == 403
        assert "access-control-allow-origin" not in refused.headers
        assert refused.json()["error"] == "CORSRequestRefused"


async def test_an_allowed_origin_reads_the_assemble_answer(
    redis: Redis, redis_server: RedisServer
) -> None:
    async with bridge(redis_server, cors_origins=SHOP, cors_max_age_seconds=3600) as (_, client):
        answer = await client.post("/v1/assemble", json=PAGE, headers={"origin": SHOP})
        stranger = await client.post(
            "/v1/assemble", json=PAGE, headers={"origin": "https://evil.example"}
        )
        cached = await client.options("/v1/assemble", headers=preflight(SHOP))
        webhook = await client.options("/webhooks/contentful", headers=preflight(SHOP))
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == SHOP
    assert "access-control-allow-credentials" not in answer.headers
    assert "access-control-allow-origin" not in stranger.headers
    assert cached.headers["access-control-max-age"] == "3600"
    assert "access-control-allow-origin" not in webhook.headers, "webhooks never answer CORS"


async def test_tracking_accepts_text_plain_json_as_browser_sdks_send_it(
    redis: Redis, redis_server: RedisServer
) -> None:
    """analytics.js posts `text/plain` (no preflight) with the write key in the body."""
    message = {
        "writeKey": WRITE_KEY,
        "batch": [{"type": "track", "event": "Clicked", "anonymousId": "browser-1"}],
    }
    async with bridge(redis_server, cors_origins=SHOP) as (_, client):
        answer = await client.post(
            "/v1/batch",
            content=orjson.dumps(message),
            headers={"content-type": "text/plain;charset=UTF-8", "origin": SHOP},
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["success"] is True
    assert answer.headers["access-control-allow-origin"] == SHOP


async def test_docs_page_needs_no_internet(redis: Redis, redis_server: RedisServer) -> None:
    async with bridge(redis_server) as (_, client):
        page = await client.get("/docs")
        redoc = await client.get("/redoc")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "/v1/assemble" in html
    assert "AssembleRequest" in html
    assert "<script" not in html
    external = re.findall(r"""(?:src|href)=["']?(?:https?:)?//""", html)
    assert external == [], "no CDN or other outside asset"
    assert redoc.status_code == 404
