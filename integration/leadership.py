"""The sync leader: of all replicas, only the one holding a lease runs the periodic sync.

The sync lock (`SyncLock` on `Keys.sync_lock`) keeps two syncs from running at once; on its own
it still lets every replica run one sync per interval, one after the other. The leader lease
(`Keys.sync_leader`, the same kind of lease) is held between syncs too: the holder renews it
every third of its life, every other replica tries to take it as often, so when the holder stops
(a clean shutdown releases it at once) or dies (it expires after `CONTENTFUL_SYNC_LEASE_SECONDS`)
exactly one other replica takes over. On-demand syncs (`/admin/sync`, `cli.py sync`, the
webhooks' healing delta) still run where they are asked, under the sync lock.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from redis.exceptions import RedisError

from core.cancellation import reraise_if_cancelling
from integration.store import SyncLock

log = structlog.get_logger()


class SyncLeadership:
    """Whether this replica leads the periodic sync, kept current by `keep()`."""

    def __init__(self, lease: SyncLock) -> None:
        self._lease = lease
        self._period = lease.ttl_seconds / 3
        self._asking = asyncio.Lock()  # one question to Redis at a time
        self.held = False

    @property
    def owner(self) -> str:
        return self._lease.owner

    async def lead(self) -> bool:
        """Renew the lease when it is ours, else try to take it; whether this replica leads."""
        async with self._asking:
            return await self._lead()

    async def _lead(self) -> bool:
        was = self.held
        try:
            self.held = await self._lease.renew() or await self._lease.acquire()
        except (RedisError, OSError) as exc:
            reraise_if_cancelling(exc)
            log.warning("contentful.sync.leader_unknown", error=type(exc).__name__)
            self.held = False
        if self.held != was:
            event = (
                "contentful.sync.leader_acquired" if self.held else "contentful.sync.leader_lost"
            )
            log.info(event, owner=self.owner)
        return self.held

    async def keep(self) -> None:
        """Lead or wait to lead until cancelled; then hand the lease back at once."""
        try:
            while True:
                await self.lead()
                await asyncio.sleep(self._period)
        finally:
            if self.held:
                with contextlib.suppress(RedisError, OSError):
                    await asyncio.shield(self._lease.release())
                self.held = False
