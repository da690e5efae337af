"""Keeps the live library in step with the store, and runs the periodic sync.

`LibraryHolder` swaps in a newly compiled snapshot whenever the content version moves: told by
pub/sub, checked again on a timer (a missed message or a reconnect still converges). The sync
loop runs one sync per interval under a Redis lock, so one replica syncs at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core import metrics
from core.redis import Keys
from integration.exceptions import ContentfulError
from integration.library import Library, compile_library
from integration.store import ContentStore, SyncLock
from integration.sync import SyncService, sync_once_locked

log = structlog.get_logger()


class LibraryHolder:
    def __init__(self, store: ContentStore, *, link_depth: int) -> None:
        self._store = store
        self._link_depth = link_depth
        self._lock = asyncio.Lock()
        self.library: Library | None = None
        self.loaded = asyncio.Event()

    async def refresh(self, *, force: bool = False) -> bool:
        """Recompile when the stored version differs from the live one; True when swapped."""
        async with self._lock:
            version = await self._store.version()
            current = self.library
            if not force and current is not None and current.version == version:
                return False
            if version == 0:
                return False
            content = await self._store.load()
            library = await asyncio.to_thread(compile_library, content, link_depth=self._link_depth)
            self.library = library
            self.loaded.set()
            metrics.CONTENT_VERSION.set(library.version)
            metrics.LIBRARY_ISSUES.set(len(library.issues))
            return True

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
                if message is not None:
                    await _drain(pubsub)
                await self.refresh()
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]


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


async def _drain(pubsub: object) -> None:
    """Coalesce a burst of change messages into one refresh."""
    get = getattr(pubsub, "get_message")  # noqa: B009
    while await get(ignore_subscribe_messages=True, timeout=0.0) is not None:
        pass


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
