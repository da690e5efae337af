"""The draft library: fetched from the Preview API on demand, compiled, cached briefly.

The Preview API has no Sync API, so a preview request that finds no fresh draft library
fetches every entry (`integration.preview_source`), compiles it with the same compiler as the
published library, and keeps it `cache_seconds`. One fetch runs at a time: concurrent preview
requests await the same one. The fetch and the compilation run in worker threads, so published
traffic on the event loop never waits for them. The draft library lives only here: never in
the store, the published snapshot, or any answer without `preview`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from assembly.preview.exceptions import DraftsUnavailable
from integration.exceptions import ContentfulError
from integration.library import Library, compile_library
from integration.store import StoredContent

log = structlog.get_logger()


class DraftSource(Protocol):
    """Every entry and asset as its latest draft (blocking: called in a worker thread)."""

    def fetch(self) -> StoredContent: ...


@dataclass(frozen=True, slots=True)
class Drafts:
    library: Library
    fetched_at: float
    """Wall-clock time (epoch seconds) the drafts were read."""


class DraftCache:
    """The draft library, at most `ttl` seconds old; `clock` is monotonic seconds."""

    def __init__(
        self,
        source: DraftSource,
        *,
        ttl: float,
        link_depth: int,
        version: Callable[[], int] = lambda: 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._ttl = ttl
        self._link_depth = link_depth
        self._version = version
        self._clock = clock
        self._cached: tuple[float, Drafts] | None = None
        self._inflight: asyncio.Task[Drafts] | None = None

    async def get(self) -> Drafts:
        cached = self._cached
        if cached is not None and self._clock() - cached[0] < self._ttl:
            return cached[1]
        task = self._inflight
        if task is None:
            task = self._inflight = asyncio.create_task(self._fetch(), name="preview-drafts")
            task.add_done_callback(self._done)
        # A caller that goes away must not cancel the fetch the others are waiting for.
        return await asyncio.shield(task)

    def _done(self, task: asyncio.Task[Drafts]) -> None:
        self._inflight = None
        if not task.cancelled() and task.exception() is not None:
            log.warning("preview.drafts_failed", detail=str(task.exception()))

    async def _fetch(self) -> Drafts:
        started = time.perf_counter()
        try:
            content = await asyncio.to_thread(self._source.fetch)
        except ContentfulError as exc:
            raise DraftsUnavailable(f"drafts could not be fetched: {exc}") from exc
        content = dataclasses.replace(content, version=self._version())
        library = await asyncio.to_thread(compile_library, content, link_depth=self._link_depth)
        drafts = Drafts(library, time.time())
        self._cached = (self._clock(), drafts)
        log.info(
            "preview.drafts_fetched",
            entities=len(content.entities),
            issues=len(library.issues),
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return drafts
