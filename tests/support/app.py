"""Run the real app in-process against the test Redis, with its lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from app import AppSettings, create_app, lifespan
from core.settings import ServiceSettings, StoreSettings
from integration.config import ContentfulSettings


def make_settings(redis_url: str | None, prefix: str = "mbtest", **contentful: Any) -> AppSettings:
    return AppSettings(
        service=ServiceSettings(log_level="warning", library_poll_seconds=0.2),
        store=StoreSettings(url=redis_url, key_prefix=prefix),
        contentful=ContentfulSettings(_env_file=None, **contentful),  # type: ignore[call-arg]
    )


async def wait_ready(app: FastAPI, timeout: float = 10.0) -> None:
    runtime = app.state.runtime
    deadline = asyncio.get_running_loop().time() + timeout
    while runtime.holder.library is None:
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("library did not load")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def running_app(
    settings: AppSettings, *, ready: bool = True
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings)
    async with lifespan(app):
        if ready:
            await wait_ready(app)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as client:
            yield app, client
