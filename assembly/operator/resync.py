"""`POST /admin/sync`: one sync under the sync lease, answered when done or after a wait.

The sync runs as a task of its own, so a caller that stops waiting (the wait ran out, or the
client went away) never cancels it: it finishes in the background, and the library holder
refreshes after it so that this replica serves what it brought. The task is one of
integration's background tasks while it runs, so shutdown cancels it like any other.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any, Protocol

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.errors import BridgeError, StoreUnavailable
from core.redis import Keys
from core.tasks import BackgroundTasks
from integration.service import LibraryHolder
from integration.store import SyncLock
from integration.sync import SyncProgress, SyncService, sync_once_locked

log = structlog.get_logger()


class SyncBusy(BridgeError):
    """Another sync (this replica's own schedule, or another replica) holds the lease."""

    status_code = 409


class SyncRuntime(Protocol):
    """The parts of `integration.wiring.IntegrationServices` a sync on demand needs."""

    redis: Redis
    keys: Keys
    sync: SyncService
    lock: SyncLock
    holder: LibraryHolder
    tasks: BackgroundTasks


async def sync_now(runtime: SyncRuntime, *, full: bool, wait: float) -> dict[str, Any] | None:
    """The sync's summary when it ends within `wait` seconds, else None (still running).

    Raises `SyncBusy` when the lease is taken, Contentful's errors (502/503) when it fails.
    """
    task = runtime.tasks.spawn(_sync(runtime, full), name="admin-sync")
    task.add_done_callback(_finished)
    log.info("admin.sync.started", full=full)
    finished, _ = await asyncio.wait({task}, timeout=wait)
    if not finished:
        return None
    try:
        progress = task.result()
    except (RedisError, OSError) as exc:
        raise StoreUnavailable(f"the store failed during the sync ({type(exc).__name__})") from exc
    if progress is None:
        raise SyncBusy(f"a sync is already running ({await _holder(runtime)}); retry shortly")
    return summary(progress, runtime.holder)


async def _sync(runtime: SyncRuntime, full: bool) -> SyncProgress | None:
    progress = await sync_once_locked(runtime.sync, runtime.lock, full=full)
    if progress is not None:
        await runtime.holder.refresh()
    return progress


def _finished(task: asyncio.Task[SyncProgress | None]) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        log.warning("admin.sync.failed", error=type(error).__name__, detail=str(error))
    elif task.result() is None:
        log.info("admin.sync.busy")
    else:
        log.info("admin.sync.finished")


async def _holder(runtime: SyncRuntime) -> str:
    try:
        owner = await runtime.redis.get(runtime.keys.sync_lock)
    except (RedisError, OSError):
        return "lease holder unknown"
    if owner is None:
        return "it has just ended"
    text = owner.decode() if isinstance(owner, bytes) else str(owner)
    return f"lease held by {text}"


def summary(progress: SyncProgress, holder: LibraryHolder) -> dict[str, Any]:
    """The sync's counts, and the library this replica serves after it."""
    library, generation = holder.library, holder.generation
    return {
        "status": "done",
        **asdict(progress),
        "seconds": round(progress.seconds, 3),
        "library": {
            "version": library.version if library else None,
            "generation": generation.id if generation else None,
            "epoch": holder.epoch,
        },
    }
