"""Integration's start: the content store, the sync and the live library, and their tasks.

`start_integration` is called once by app.py's lifespan; `build_integration` builds the same
parts without starting anything (cli.py's one-off commands).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.redis import Keys
from core.settings import ServiceSettings
from core.tasks import BackgroundTasks
from integration.client import ContentfulSource
from integration.config import ContentfulSettings
from integration.demo import DemoSource
from integration.exceptions import ContentfulError
from integration.leadership import SyncLeadership
from integration.library import Library
from integration.schemas import ContentSource
from integration.service import LibraryHolder, sync_forever
from integration.store import ContentStore, SyncLock
from integration.sync import SyncService, sync_once_locked

log = structlog.get_logger()


@dataclass
class IntegrationServices:
    redis: Redis
    embedded: bool
    keys: Keys
    content: ContentStore
    holder: LibraryHolder
    sync: SyncService
    lock: SyncLock
    leader: SyncLeadership
    tasks: BackgroundTasks = field(default_factory=BackgroundTasks)
    first_sync: asyncio.Event = field(default_factory=asyncio.Event)

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready only with a complete library; says which generation, how old, and the sync."""
        library = self.holder.library
        store_ok = await _ping(self.redis)
        detail: dict[str, Any] = {
            "library": self._library_detail(),
            "store": {
                "reachable": store_ok,
                "embedded": self.embedded,
                "lostSince": self.holder.store_lost_since,
            },
            "source": self.sync.source_name,
            **(await self._sync_detail() if store_ok else {"sync": None, "syncAgeSeconds": None}),
        }
        return library is not None and store_ok, detail

    def _library_detail(self) -> dict[str, Any] | None:
        library, generation = self.holder.library, self.holder.generation
        if library is None:
            return None
        built = generation.built_at if generation else library.built_at
        return {
            **library.summary(),
            "generation": generation.id if generation else None,
            "builtAt": built,
            "ageSeconds": round(time.time() - built, 1),
            "epoch": self.holder.epoch,
        }

    async def _sync_detail(self) -> dict[str, Any]:
        """The sync as the store records it (whichever replica runs it)."""
        try:
            state = await self.content.sync_state()
            owner = await self.redis.get(self.keys.sync_lock)
            synced_at = await self.content.synced_at()
        except (RedisError, OSError):
            return {"sync": None, "syncAgeSeconds": None}
        error = state.get("lastError")
        return {
            "sync": {
                "running": state.get("running") or None if owner else None,
                "lastSuccessAt": _float(state.get("lastSuccessAt")),
                "lastErrorAt": _float(state.get("lastErrorAt")),
                "lastError": orjson.loads(error) if error else None,
                "lastMode": state.get("lastMode") or None,
                "leading": self.leader.held,  # this replica runs the periodic sync
            },
            "syncAgeSeconds": round(time.time() - synced_at, 1) if synced_at else None,
        }


def _float(raw: str | None) -> float | None:
    return float(raw) if raw else None


async def _ping(redis: Redis) -> bool:
    try:
        return bool(await redis.ping())
    except (RedisError, OSError):
        return False


def content_source(settings: ContentfulSettings) -> ContentSource:
    if settings.configured:
        return ContentfulSource(settings)
    log.info("contentful.demo", detail="CONTENTFUL_SPACE_ID unset: serving the bundled demo space")
    return DemoSource()


def build_integration(
    redis: Redis,
    keys: Keys,
    settings: ContentfulSettings,
    service: ServiceSettings,
    *,
    embedded: bool,
    on_install: Callable[[Library], None] | None = None,
    tasks: BackgroundTasks | None = None,
) -> IntegrationServices:
    """The parts, not started; `on_install` hears of every library the holder installs, and
    `tasks` takes the syncs started later (the on-demand and store-lost ones)."""
    content = ContentStore(redis, keys)
    # The sync validates a generation by compiling it in the holder, which then adopts it.
    holder = LibraryHolder(content, link_depth=service.link_depth, on_install=on_install)
    return IntegrationServices(
        redis=redis,
        embedded=embedded,
        keys=keys,
        content=content,
        holder=holder,
        sync=SyncService(content_source(settings), content, validate=holder.prepare),
        lock=SyncLock(redis, keys.sync_lock, ttl_seconds=settings.sync_lease_seconds),
        leader=SyncLeadership(
            SyncLock(redis, keys.sync_leader, ttl_seconds=settings.sync_lease_seconds)
        ),
        tasks=tasks or BackgroundTasks(),
    )


async def start_integration(
    redis: Redis,
    keys: Keys,
    settings: ContentfulSettings,
    service: ServiceSettings,
    stack: AsyncExitStack,
    tasks: BackgroundTasks,
    *,
    embedded: bool,
    on_install: Callable[[Library], None] | None = None,
) -> IntegrationServices:
    """Build, then run the periodic sync and the library watch in `tasks` until `stack`
    closes."""
    parts = build_integration(
        redis, keys, settings, service, embedded=embedded, on_install=on_install, tasks=tasks
    )
    stack.push_async_callback(tasks.stop)
    full_resync_on_store_loss(parts)
    interval = settings.sync_interval_seconds
    parts.tasks.spawn(parts.leader.keep(), name="sync-leader")
    parts.tasks.spawn(
        sync_forever(
            parts.sync, parts.lock, interval, attempted=parts.first_sync, leader=parts.leader
        ),
        name="sync",
    )
    parts.tasks.spawn(
        parts.holder.watch(redis, keys, service.library_poll_seconds), name="library-watch"
    )
    return parts


def full_resync_on_store_loss(parts: IntegrationServices) -> None:
    """When the store lost its data: rebuild a generation now (one replica wins the lease)."""

    def trigger() -> None:
        parts.tasks.spawn(_full_resync(parts), name="store-lost-resync")

    parts.holder.on_store_lost = trigger


async def _full_resync(parts: IntegrationServices) -> None:
    try:
        result = await sync_once_locked(parts.sync, parts.lock, full=True)
    except (ContentfulError, RedisError, OSError) as exc:
        log.error("contentful.sync.failed", error=type(exc).__name__, detail=str(exc))
        return
    if result is not None:
        await parts.holder.refresh()
