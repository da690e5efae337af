"""Explain from the shared store, without a running service (`cli.py explain`).

The library is compiled from the stored content (the version every replica serves once it
caught up), the admin kill switches are read from the store, the profile and decision state
as assemble reads them. What a replica decided in the last milliseconds and has not flushed
yet is not seen here (the route `POST /admin/explain` sees its own replica's).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.asyncio import Redis

from assembly.config import DecisionSettings
from assembly.decisions.engine import DecisionEngine
from assembly.decisions.state import PendingWrites
from assembly.explain.service import ExplainService
from assembly.killswitch import FixedBoard, KillSwitchStore
from assembly.schemas import AssembleRequest
from assembly.store import DecisionStateStore
from core.redis import Keys
from integration.library import Library, compile_library
from integration.store import ContentStore
from segment_sync.profiles.store import RedisProfileStore


@dataclass(frozen=True, slots=True)
class _Loaded:
    library: Library | None


async def explain_from_store(
    redis: Redis,
    keys: Keys,
    content: ContentStore,
    settings: DecisionSettings,
    request: AssembleRequest,
    *,
    now: datetime,
    link_depth: int,
) -> dict[str, Any]:
    library = compile_library(await content.load(), link_depth=link_depth)
    board = await KillSwitchStore(redis, keys).load()
    engine = DecisionEngine(settings, switches=FixedBoard(board))
    reader = DecisionStateStore(redis, keys, RedisProfileStore(redis, keys), PendingWrites())
    try:
        service = ExplainService(_Loaded(library), reader, engine, lambda: now)
        return await service.explain(request)
    finally:
        await reader.reads.aclose()
