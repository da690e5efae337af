"""Every error answers JSON: a store failure is a 503 with Retry-After, anything unexpected a
500 that carries a request id, logged with the same id."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from structlog.testing import capture_logs

from core.errors import install_error_handlers
from tests.support.redis_server import free_port


def broken_app() -> FastAPI:
    """A bare app with our error handling and routes that fail the ways handlers must meet."""
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/bug")
    async def bug() -> dict[str, str]:
        raise RuntimeError("a bug with a secret inside")

    @app.get("/store")
    async def store() -> dict[str, str]:
        redis = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
        try:
            await redis.get("x")
        finally:
            await redis.aclose()
        return {}

    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=broken_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as client:
        yield client


async def test_an_unexpected_error_is_a_json_500_with_a_request_id(
    client: httpx.AsyncClient,
) -> None:
    with capture_logs() as logs:
        response = await client.get("/bug")
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "InternalError"
    request_id = response.headers["x-request-id"]
    assert request_id in body["detail"]
    assert "secret" not in body["detail"]
    [line] = [entry for entry in logs if entry["event"] == "http.unexpected_error"]
    assert line["request_id"] == request_id
    assert line["path"] == "/bug"
    assert line["exc_info"] is True


async def test_the_callers_request_id_is_kept_when_it_is_plain(client: httpx.AsyncClient) -> None:
    with capture_logs():  # (and no slow pretty traceback on the console)
        kept = await client.get("/bug", headers={"x-request-id": "edge-7f3a.42"})
        replaced = await client.get("/bug", headers={"x-request-id": "bad id\twith spaces"})
    assert kept.headers["x-request-id"] == "edge-7f3a.42"
    assert replaced.headers["x-request-id"] != "bad id\twith spaces"
    assert len(replaced.headers["x-request-id"]) == 32


async def test_a_store_failure_is_a_503_with_retry_after(client: httpx.AsyncClient) -> None:
    response = await client.get("/store")
    assert response.status_code == 503
    assert response.json()["error"] == "StoreUnavailable"
    assert int(response.headers["retry-after"]) > 0
