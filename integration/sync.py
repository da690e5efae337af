"""Initial and delta sync from a `ContentSource` into the `ContentStore`.

The SDK is blocking, so every fetch runs in a worker thread; the event loop only writes pages.
The stored sync token decides the mode: none → initial sync, otherwise a delta from the token.
A full resync (`full=True`) starts over and then removes what the space no longer has.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from core import metrics
from integration.exceptions import ContentfulRequestRejected
from integration.normalize import Changes, normalize_items
from integration.schemas import ContentSource, Locale, SyncPage
from integration.store import ContentStore, SyncLock

log = structlog.get_logger()

ProgressCallback = Callable[["SyncProgress"], None]


@dataclass(slots=True)
class SyncProgress:
    mode: str
    pages: int = 0
    upserts: int = 0
    deletions: int = 0
    pruned: int = 0
    version: int = 0
    seconds: float = 0.0


class SyncService:
    def __init__(self, source: ContentSource, store: ContentStore) -> None:
        self._source = source
        self._store = store

    @property
    def store(self) -> ContentStore:
        return self._store

    @property
    def source_name(self) -> str:
        return self._source.name

    async def run(
        self, *, full: bool = False, progress: ProgressCallback | None = None
    ) -> SyncProgress:
        """One sync; a delta whose token Contentful rejects (400) becomes a full resync."""
        try:
            return await self._run(full=full, progress=progress)
        except ContentfulRequestRejected as exc:
            if full or exc.upstream_status != 400:
                raise
            log.warning("contentful.sync.token_rejected", detail=str(exc))
            return await self._run(full=True, progress=progress)

    async def _run(self, *, full: bool, progress: ProgressCallback | None) -> SyncProgress:
        started = time.perf_counter()
        token = None if full else await self._store.sync_token()
        state = SyncProgress(mode="delta" if token else ("full" if full else "initial"))
        bound = log.bind(source=self._source.name, mode=state.mode)
        bound.info("contentful.sync.started")
        try:
            await self._run_pages(token, state, progress, collect_seen=state.mode != "delta")
        except Exception:
            metrics.SYNC_RUNS.labels(outcome="error").inc()
            raise
        state.seconds = time.perf_counter() - started
        metrics.SYNC_RUNS.labels(outcome="ok").inc()
        metrics.SYNC_DURATION.labels(mode=state.mode).observe(state.seconds)
        metrics.note_synced_at(time.time())
        bound.info(
            "contentful.sync.finished",
            pages=state.pages,
            upserts=state.upserts,
            deletions=state.deletions,
            pruned=state.pruned,
            version=state.version,
            seconds=round(state.seconds, 3),
        )
        return state

    async def _run_pages(
        self,
        token: str | None,
        state: SyncProgress,
        progress: ProgressCallback | None,
        *,
        collect_seen: bool,
    ) -> None:
        locales: list[Locale] | None = await asyncio.to_thread(self._source.fetch_locales)
        if locales == await self._store.locales():
            locales = None
        seen: set[str] = set()
        while True:
            page = await asyncio.to_thread(self._source.fetch_sync_page, token)
            changes = normalize_items(page.items)
            seen.update(e.key for e in changes.upserts)
            state.version = await self._store.apply(
                changes, token=page.token, locales=locales if state.pages == 0 else None
            )
            state.pages += 1
            state.upserts += len(changes.upserts)
            state.deletions += len(changes.deletions)
            log.debug("contentful.sync.page_applied", page=state.pages, items=len(page.items))
            if progress is not None:
                progress(state)
            if not _has_next_page(page):
                break
            token = page.next_page_token
        if collect_seen:
            await self._prune(seen, state)

    async def _prune(self, seen: set[str], state: SyncProgress) -> None:
        """After an initial or full sync, drop entities the space no longer has."""
        stale = await self._store.entity_keys() - seen
        if stale:
            state.version = await self._store.apply(Changes(deletions=sorted(stale)))
            state.pruned = len(stale)


def _has_next_page(page: SyncPage) -> bool:
    return bool(page.next_page_token)


async def sync_once_locked(
    service: SyncService, lock: SyncLock, *, full: bool = False
) -> SyncProgress | None:
    """Run one sync if this replica gets the lock; `None` when another replica holds it."""
    if not await lock.acquire():
        log.debug("contentful.sync.skipped", reason="lock held by another replica")
        return None
    try:
        return await service.run(full=full)
    finally:
        await lock.release()
