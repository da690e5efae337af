"""Keeps the live library in step with the store, and runs the periodic sync.

`LibraryHolder` swaps in a newly compiled snapshot whenever the content version moves: told by
pub/sub, checked again on a timer (a missed message or a reconnect still converges). A message
that names its changed keys (`ContentChange`, sent by webhooks) is applied as a patch: only those
keys are re-read and the library is recompiled from the entities kept in memory. The sync
loop runs one sync per interval under a Redis lock, so one replica syncs at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core import metrics
from core.redis import Keys
from integration.exceptions import ContentfulError
from integration.library import Library, compile_library
from integration.schemas import Entity
from integration.store import ContentChange, ContentStore, StoredContent, SyncLock
from integration.sync import SyncService, sync_once_locked

log = structlog.get_logger()


class LibraryHolder:
    def __init__(self, store: ContentStore, *, link_depth: int) -> None:
        self._store = store
        self._link_depth = link_depth
        self._lock = asyncio.Lock()
        self.library: Library | None = None
        self.loaded = asyncio.Event()
        self._content: StoredContent | None = None  # what `library` was compiled from

    async def refresh(self, *, force: bool = False) -> bool:
        """Recompile when the stored version differs from the live one; True when swapped."""
        async with self._lock:
            version = await self._store.version()
            current = self.library
            if not force and current is not None and current.version == version:
                return False
            if version == 0:
                return False
            await self._install(await self._store.load())
            return True

    async def patch(
        self, change: ContentChange, entities: Mapping[str, Entity | None] | None = None
    ) -> bool:
        """Apply one change to the live snapshot: re-read only its keys, recompile from memory.

        `entities` (key → entity, None = removed) saves the read when the caller wrote them.
        True when the snapshot is at `change.version` or newer afterwards; False when the
        change does not follow the live snapshot, and only a `refresh()` can catch up.
        """
        async with self._lock:
            current, content = self.library, self._content
            if current is not None and current.version >= change.version:
                return True
            if current is None or content is None or current.version != change.base:
                return False
            if entities is None:
                entities = await self._store.read_entities(change.keys)
            merged = dict(content.entities)
            for key, entity in entities.items():
                if entity is None:
                    merged.pop(key, None)
                else:
                    merged[key] = entity
            await self._install(replace(content, version=change.version, entities=merged))
            return True

    async def _install(self, content: StoredContent) -> None:
        library = await asyncio.to_thread(compile_library, content, link_depth=self._link_depth)
        self.library = library
        self._content = content
        self.loaded.set()
        metrics.CONTENT_VERSION.set(library.version)
        metrics.LIBRARY_ISSUES.set(len(library.issues))

    async def watch(self, redis: Redis, keys: Keys, poll_seconds: float) -> None:
        """Refresh on every "content changed" message, and at least every `poll_seconds`."""
        while True:
            try:
                await self._listen(redis, keys, poll_seconds)
            except (RedisError, OSError) as exc:
                _reraise_if_cancelling(exc)
                log.warning("library.watch_failed", error=str(exc))
                await asyncio.sleep(poll_seconds)

    async def _listen(self, redis: Redis, keys: Keys, poll_seconds: float) -> None:
        pubsub = redis.pubsub()
        try:
            await pubsub.subscribe(keys.content_channel)
            await self.refresh()
            while True:
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=poll_seconds
                )
                if message is not None and await self._patch_all([message, *await _drain(pubsub)]):
                    continue
                await self.refresh()
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _patch_all(self, messages: list[dict[str, Any]]) -> bool:
        """Patch the snapshot message by message; False as soon as one needs a full refresh."""
        for message in messages:
            change = ContentChange.decode(message.get("data") or b"")
            if change is None or not await self.patch(change):
                return False
        return True


async def _note_sync_age(service: SyncService) -> None:
    """Replicas that did not hold the lock learn the last sync time from the store."""
    with contextlib.suppress(RedisError, OSError):
        synced_at = await service.store.synced_at()
        if synced_at is not None:
            metrics.note_synced_at(synced_at)


def _reraise_if_cancelling(exc: BaseException) -> None:
    """redis-py may turn a cancelled read into a ConnectionError: never swallow a cancel."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc


async def _drain(pubsub: object) -> list[dict[str, Any]]:
    """Every change message already waiting, so a burst is handled in one pass."""
    get = getattr(pubsub, "get_message")  # noqa: B009
    messages = []
    while (message := await get(ignore_subscribe_messages=True, timeout=0.0)) is not None:
        messages.append(message)
    return messages


async def sync_forever(
    service: SyncService, lock: SyncLock, interval: float, *, attempted: asyncio.Event
) -> None:
    """One sync now, then one per interval; failures are logged and retried next round.

    `attempted` is set once the first round has ended, whatever its outcome.
    """
    while True:
        started = time.monotonic()
        try:
            await sync_once_locked(service, lock)
        except (ContentfulError, RedisError, OSError) as exc:
            _reraise_if_cancelling(exc)
            log.error("contentful.sync.failed", error=type(exc).__name__, detail=str(exc))
        await _note_sync_age(service)
        attempted.set()
        if interval <= 0:
            return
        await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))
