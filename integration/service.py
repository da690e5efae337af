"""Keeps the live library in step with the store, and runs the periodic sync.

`LibraryHolder` swaps in a newly compiled snapshot whenever the content version moves: told by
pub/sub, checked again on a timer (a missed message or a reconnect still converges). A message
that names its changed keys (`ContentChange`, sent by webhooks) is applied as a patch: only those
keys are re-read, and the incremental builder (`integration.builder`) recompiles only what they
touch. A full reload is diffed against the builder, so it too recompiles only what differs; a
generation this process validated (`prepare`) is adopted instead of compiled twice. Compiles run
in a worker thread, off the event loop. The sync loop runs one sync per interval under a Redis
lock, so one replica syncs at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.cancellation import reraise_if_cancelling
from core.redis import Keys
from integration import metrics
from integration.builder import LibraryBuilder
from integration.exceptions import ContentfulError
from integration.leadership import SyncLeadership
from integration.library import Library
from integration.schemas import Entity
from integration.store import ContentChange, ContentStore, Generation, StoredContent, SyncLock
from integration.sync import SyncService, sync_once_locked

log = structlog.get_logger()


class LibraryHolder:
    """The live library of this replica, and the rules for replacing it.

    It installs only complete generations (the store's epoch marker is set), and within one
    epoch only a newer version. When the epoch marker disappears (the store lost its data) it
    keeps serving what it has, reports `store_lost`, and calls `on_store_lost` once.
    """

    def __init__(
        self,
        store: ContentStore,
        *,
        link_depth: int,
        on_install: Callable[[Library], None] | None = None,
        on_store_lost: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._link_depth = link_depth
        self._lock = asyncio.Lock()
        self.library: Library | None = None
        self.loaded = asyncio.Event()
        self._content: StoredContent | None = None  # what `library` was compiled from
        self._builder: LibraryBuilder | None = None  # compiled state behind `library`
        self._prepared: LibraryBuilder | None = None  # a validated generation, see `prepare`
        self.on_install = on_install
        self.on_store_lost = on_store_lost
        self.store_lost_since: float | None = None

    @property
    def epoch(self) -> str | None:
        return self._content.epoch if self._content else None

    @property
    def generation(self) -> Generation | None:
        return self._content.generation if self._content else None

    async def refresh(self, *, force: bool = False) -> bool:
        """Install the store's library when it is newer than the live one; True when swapped."""
        async with self._lock:
            epoch, version = await self._store.head()
            if epoch is None:
                self._note_store_without_generation()
                return False
            live = self.library.version if self.library and epoch == self.epoch else None
            if live is not None and not force and version <= live:
                return False
            if live is not None and not force and await self._catch_up(live):
                return True
            content = await self._store.load()
            if content.epoch is None or (live is not None and content.version < live):
                return False
            builder, library = await self._compiled(self._base_for(content), content, None)
            await self._install(library, replace(content, entities=builder.entities))
            return True

    async def _catch_up(self, live: int) -> bool:
        """Apply what was written since `live` (a missed or overtaken message) without a full
        read; False when an install or a locale change came between, or nothing is known."""
        builder, content = self._builder, self._content
        if builder is None or content is None:
            return False
        since = await self._store.changed_since(live)
        if since.generation != content.generation or since.locales != builder.locales:
            return False
        if not since.keys or since.version <= live:
            return False
        entities = await self._store.read_entities(since.keys)
        patched = replace(content, version=since.version)
        builder, library = await self._compiled(builder, patched, entities)
        await self._install(library, replace(patched, entities=builder.entities))
        return True

    def prepare(self, content: StoredContent) -> Library:
        """Compile a staged generation (the sync's validator, in a worker thread) and keep it:
        the refresh after its install then only applies what differs from it."""
        builder = LibraryBuilder(content, link_depth=self._link_depth)
        self._prepared = builder
        assert builder.library is not None
        return builder.library

    def _base_for(self, content: StoredContent) -> LibraryBuilder | None:
        """The builder a full read is diffed against: a prepared generation, else the live one;
        None (compile from nothing) when the locales changed."""
        prepared, self._prepared = self._prepared, None
        for builder in (prepared, self._builder):
            if builder is not None and builder.locales == content.locales:
                return builder
        return None

    async def _compiled(
        self,
        builder: LibraryBuilder | None,
        content: StoredContent,
        changes: Mapping[str, Entity | None] | None,
    ) -> tuple[LibraryBuilder, Library]:
        """The library at `content.version`, compiled in a worker thread: `changes` (None: a
        full read, diffed against `builder`) applied to `builder`, or everything from nothing."""

        def compile_now() -> tuple[LibraryBuilder, Library]:
            if builder is None:
                fresh = LibraryBuilder(content, link_depth=self._link_depth)
                assert fresh.library is not None
                return fresh, fresh.library
            if changes is None:
                return builder, builder.rebase(content.version, content.entities)
            return builder, builder.apply(content.version, changes)

        try:
            compiled = await asyncio.to_thread(compile_now)
        except BaseException:
            self._builder = None  # it may hold half a change: the next install starts afresh
            raise
        self._builder = compiled[0]
        return compiled

    def _note_store_without_generation(self) -> None:
        """No epoch marker: a fresh store (nothing to do) or one that lost its data."""
        if self.epoch is None or self.store_lost_since is not None:
            return
        self.store_lost_since = time.time()
        metrics.STORE_LOST.set(1)
        metrics.STORE_LOSSES.inc()
        log.error(
            "library.store_lost",
            detail="the store's epoch marker is gone; serving the last complete library",
            version=self.library.version if self.library else None,
        )
        if self.on_store_lost is not None:
            self.on_store_lost()

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
            builder = self._builder
            if builder is None:
                return False
            patched = replace(content, version=change.version)
            builder, library = await self._compiled(builder, patched, entities)
            await self._install(library, replace(patched, entities=builder.entities))
            return True

    async def _install(self, library: Library, content: StoredContent) -> None:
        self.library = library
        self._content = content
        self.loaded.set()
        if self.store_lost_since is not None and content.epoch is not None:
            log.info("library.store_recovered", epoch=content.epoch, version=content.version)
            self.store_lost_since = None
            metrics.STORE_LOST.set(0)
        metrics.CONTENT_VERSION.set(library.version)
        metrics.LIBRARY_ISSUES.set(len(library.issues))
        if content.generation is not None:
            metrics.LIBRARY_GENERATION_AGE.set(content.generation.built_at)
        if self.on_install is not None:
            self.on_install(library)

    async def watch(self, redis: Redis, keys: Keys, poll_seconds: float) -> None:
        """Refresh on every "content changed" message, and at least every `poll_seconds`."""
        while True:
            try:
                await self._listen(redis, keys, poll_seconds)
            except (RedisError, OSError) as exc:
                reraise_if_cancelling(exc)
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


async def _drain(pubsub: object) -> list[dict[str, Any]]:
    """Every change message already waiting, so a burst is handled in one pass."""
    get = getattr(pubsub, "get_message")  # noqa: B009
    messages = []
    while (message := await get(ignore_subscribe_messages=True, timeout=0.0)) is not None:
        messages.append(message)
    return messages


async def sync_forever(
    service: SyncService,
    lock: SyncLock,
    interval: float,
    *,
    attempted: asyncio.Event,
    leader: SyncLeadership | None = None,
) -> None:
    """One sync now, then one per interval; failures are logged and retried next round.

    With a `leader`, a round syncs only while this replica leads (the others skip it).
    `attempted` is set once the first round has ended, whatever its outcome.
    """
    while True:
        started = time.monotonic()
        try:
            if leader is None or await leader.lead():
                await sync_once_locked(service, lock)
        except (ContentfulError, RedisError, OSError) as exc:
            reraise_if_cancelling(exc)
            log.error("contentful.sync.failed", error=type(exc).__name__, detail=str(exc))
        await _note_sync_age(service)
        attempted.set()
        if interval <= 0:
            return
        await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))
