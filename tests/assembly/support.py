"""The real app with decision settings of a test's choosing, and helpers to read its effects."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI
from pydantic import SecretStr

from assembly.config import DecisionSettings
from assembly.decision_log.service import DecisionLog
from assembly.wiring import DecisionRuntime
from tests.support.app import assemble as assemble_answer
from tests.support.app import by_slot, make_settings, running_app

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ADMIN_TOKEN = "test-admin-token"
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}", "x-admin-user": "alice"}
Client = tuple[FastAPI, httpx.AsyncClient]


@asynccontextmanager
async def decision_app(
    redis_url: str, *, admin: bool = False, **decisions: Any
) -> AsyncIterator[Client]:
    """The app on the test Redis, its clock at `NOW`, with `DecisionSettings(**decisions)`."""
    settings = make_settings(redis_url)
    service = settings.service
    if admin:
        service = service.model_copy(update={"admin_token": SecretStr(ADMIN_TOKEN)})
    settings = dataclasses.replace(
        settings, service=service, decisions=DecisionSettings(_env_file=None, **decisions)
    )
    async with running_app(settings) as (app, client):
        app.state.services.assembly.service.clock = lambda: NOW
        yield app, client


def runtime(app: FastAPI) -> DecisionRuntime:
    decisions: DecisionRuntime = app.state.services.assembly.decisions
    return decisions


async def settle(app: FastAPI, seconds: float = 5.0) -> None:
    """Wait until the off-path writer has flushed every write handed to it."""
    writer = runtime(app).writer
    for _ in range(int(seconds / 0.005)):
        if writer.queued == 0 and len(writer.pending) == 0:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"the writer did not settle in {seconds} s")


async def logged(app: FastAPI) -> None:
    """Wait until the decision log writer has stored every record handed to it."""
    log: DecisionLog = app.state.services.assembly.decision_log
    for _ in range(1000):
        if log.writer.unwritten == 0:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the decision log writer did not settle")


async def replayed(client: httpx.AsyncClient, decision_id: str) -> dict[str, Any]:
    """`POST /admin/decisions/{id}/replay` (status 200 checked)."""
    response = await client.post(f"/admin/decisions/{decision_id}/replay", headers=ADMIN)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def assemble(client: httpx.AsyncClient, **body: Any) -> dict[str, dict[str, Any]]:
    """The answer's slots by key (status 200 checked)."""
    return by_slot(await assemble_answer(client, **body))
