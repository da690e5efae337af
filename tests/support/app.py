"""Run the real app in-process against the test Redis, with its lifespan."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from app import AppSettings, create_app, lifespan
from core.settings import ServiceSettings, StoreSettings
from integration.config import ContentfulSettings


def make_settings(
    redis_url: str | None,
    prefix: str = "mbtest",
    *,
    snapshot_path: Path | None = None,
    cluster: bool = False,
    **contentful: Any,
) -> AppSettings:
    """Settings for one test app; its last-good snapshot goes to a fresh temporary folder
    unless `snapshot_path` says where."""
    snapshot = snapshot_path or Path(tempfile.mkdtemp(prefix="mb-snapshot-")) / "library.json"
    return AppSettings(
        service=ServiceSettings(
            log_level="warning", library_poll_seconds=0.2, snapshot_path=snapshot
        ),
        store=StoreSettings(url=redis_url, key_prefix=prefix, cluster=cluster),
        contentful=ContentfulSettings(_env_file=None, **contentful),
    )


async def wait_ready(app: FastAPI) -> None:
    runtime = app.state.services.integration
    await asyncio.wait_for(runtime.holder.loaded.wait(), 10)
    await asyncio.wait_for(runtime.first_sync.wait(), 10)


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


async def assemble(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    """`POST /v1/assemble` (template `home` unless `body` names one); the answer, 200 checked."""
    body.setdefault("template", "home")
    response = await client.post("/v1/assemble", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def by_slot(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """An assemble answer's slots by their key."""
    return {s["slot"]: s for s in answer["slots"]}
