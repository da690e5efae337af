"""Initial, full and delta sync from a `ContentSource` into the `ContentStore`.

The SDK is blocking, so every fetch runs in a worker thread; the event loop only writes.

- A full sync (no stored generation, `full=True`, or a sync token Contentful rejects) stages its
  pages under a new generation, validates it (complete, and it compiles), then installs it in
  one step (`ContentStore.install`). Until then every replica serves the previous generation.
- A delta sync collects its pages and writes them in one guarded step with the new token, so a
  crash mid-sync leaves the previous state and the old token (the next sync redoes the delta).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import orjson
import structlog

from integration import metrics
from integration.exceptions import ContentfulError, ContentfulRequestRejected
from integration.normalize import Changes, normalize_items
from integration.schemas import ContentSource, Locale, SyncPage
from integration.store import (
    ContentStore,
    Generation,
    StoredContent,
    SyncLock,
    new_generation_id,
    writes_of,
)

log = structlog.get_logger()

ProgressCallback = Callable[["SyncProgress"], None]
Validator = Callable[[StoredContent], object]


class GenerationRejected(ContentfulError):
    """A staged generation failed validation; the previous one stays live."""

    status_code = 502


@dataclass(slots=True)
class SyncProgress:
    mode: str
    pages: int = 0
    upserts: int = 0
    deletions: int = 0
    pruned: int = 0
    kept: int = 0  # entities a newer webhook write kept over what the sync delivered
    skipped: int = 0  # delta writes refused because the store holds a newer revision
    version: int = 0
    generation: str | None = None
    seconds: float = 0.0


class SyncService:
    def __init__(
        self, source: ContentSource, store: ContentStore, *, validate: Validator | None = None
    ) -> None:
        self._source = source
        self._store = store
        self._validate = validate

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
        token = await self._delta_token(full)
        state = SyncProgress(mode="delta" if token else ("full" if full else "initial"))
        bound = log.bind(source=self._source.name, mode=state.mode)
        bound.info("contentful.sync.started")
        await self._store.note_sync(running=state.mode, runningSince=time.time())
        try:
            if token:
                await self._delta(token, state, progress)
            else:
                await self._full(state, progress)
        except Exception as exc:
            metrics.SYNC_RUNS.labels(outcome="error").inc()
            await self._note_failure(exc, state)
            raise
        state.seconds = time.perf_counter() - started
        await self._note_success(state)
        bound.info("contentful.sync.finished", **_summary(state))
        return state

    async def _delta_token(self, full: bool) -> str | None:
        """The token to resume from; None (a full sync) when the store has no generation."""
        if full:
            return None
        epoch, _ = await self._store.head()
        return await self._store.sync_token() if epoch is not None else None

    async def _delta(
        self, token: str, state: SyncProgress, progress: ProgressCallback | None
    ) -> None:
        locales = await self._changed_locales()
        changes, token_after = Changes(), token
        async for page, page_changes in self._pages(token, state, progress):
            changes.upserts.extend(page_changes.upserts)
            changes.deletions.extend(page_changes.deletions)
            token_after = page.token
        result = await self._store.write(writes_of(changes), token=token_after, locales=locales)
        state.version, state.skipped = result.version, len(result.skipped)

    async def _full(self, state: SyncProgress, progress: ProgressCallback | None) -> None:
        locales: list[Locale] = await asyncio.to_thread(self._source.fetch_locales)
        _, since = await self._store.head()
        generation = new_generation_id()
        state.generation = generation
        seen: set[str] = set()
        token = ""
        try:
            async for page, changes in self._pages(None, state, progress):
                await self._store.stage(generation, changes)
                seen.update(e.key for e in changes.upserts)
                seen.difference_update(changes.deletions)
                token = page.token
            await self._check_staged(generation, seen, locales)
        except BaseException:
            await asyncio.shield(self._store.discard(generation))
            raise
        built = Generation(generation, time.time(), len(seen))
        result = await self._store.install(built, since=since, token=token, locales=locales)
        metrics.GENERATIONS_INSTALLED.inc()
        state.version, state.kept, state.pruned = result.version, result.kept, result.pruned

    async def _check_staged(self, generation: str, seen: set[str], locales: list[Locale]) -> None:
        """Refuse a generation that lost pages on the way or does not compile."""
        staged = await self._store.load_staged(generation)
        if set(staged) != seen:
            metrics.GENERATIONS_REJECTED.inc()
            missing = len(seen - set(staged))
            raise GenerationRejected(f"generation {generation} is incomplete: {missing} missing")
        if self._validate is None:
            return
        content = StoredContent(version=0, entities=staged, locales=locales)
        try:
            await asyncio.to_thread(self._validate, content)
        except Exception as exc:
            metrics.GENERATIONS_REJECTED.inc()
            raise GenerationRejected(f"generation {generation} failed validation: {exc}") from exc

    async def _pages(
        self, token: str | None, state: SyncProgress, progress: ProgressCallback | None
    ) -> AsyncIterator[tuple[SyncPage, Changes]]:
        """Each page of one sync with its normalized changes, counted into `state`."""
        while True:
            page = await asyncio.to_thread(self._source.fetch_sync_page, token)
            changes = normalize_items(page.items)
            state.pages += 1
            state.upserts += len(changes.upserts)
            state.deletions += len(changes.deletions)
            log.debug("contentful.sync.page_fetched", page=state.pages, items=len(page.items))
            if progress is not None:
                progress(state)
            yield page, changes
            if not _has_next_page(page):
                return
            token = page.next_page_token

    async def _changed_locales(self) -> list[Locale] | None:
        locales: list[Locale] = await asyncio.to_thread(self._source.fetch_locales)
        return None if locales == await self._store.locales() else locales

    async def _note_success(self, state: SyncProgress) -> None:
        now = time.time()
        metrics.SYNC_RUNS.labels(outcome="ok").inc()
        metrics.SYNC_DURATION.labels(mode=state.mode).observe(state.seconds)
        metrics.note_synced_at(now)
        await self._store.note_sync(
            running="", lastSuccessAt=now, lastMode=state.mode, lastVersion=state.version
        )

    async def _note_failure(self, exc: BaseException, state: SyncProgress) -> None:
        detail = orjson.dumps({"error": type(exc).__name__, "detail": str(exc)}).decode()
        try:
            await self._store.note_sync(
                running="", lastError=detail, lastErrorAt=time.time(), lastMode=state.mode
            )
        except Exception as note_exc:  # the store may be what failed
            log.warning("contentful.sync.state_unrecorded", error=type(note_exc).__name__)


def _summary(state: SyncProgress) -> dict[str, object]:
    return {
        "pages": state.pages,
        "upserts": state.upserts,
        "deletions": state.deletions,
        "pruned": state.pruned,
        "kept": state.kept,
        "skipped": state.skipped,
        "version": state.version,
        "generation": state.generation,
        "seconds": round(state.seconds, 3),
    }


def _has_next_page(page: SyncPage) -> bool:
    return bool(page.next_page_token)


async def sync_once_locked(
    service: SyncService, lock: SyncLock, *, full: bool = False
) -> SyncProgress | None:
    """Run one sync if this replica gets the lease; `None` when another replica holds it."""
    async with lock.held() as mine:
        if not mine:
            log.debug("contentful.sync.skipped", reason="lock held by another replica")
            return None
        return await service.run(full=full)
