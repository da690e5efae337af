"""The guarded write of one webhook: dedupe, revision check and apply in one transaction.

Keys (next to the sync's `<p>:content:*`, see docs/webhooks.md):
- `<p>:content:revisions` hash: entity key → rank of the last webhook applied to it
  (`2 * revision + 1` for a removal), kept after the entity is removed, so that a late
  publish of an older revision cannot bring a deleted entity back.
- `<p>:webhooks:contentful:seen:<sha256>` string with expiry: one delivery already applied.

Under WATCH of the dedupe key, the content version and the revisions hash, the current state
is read; then one MULTI/EXEC writes the entity (or removes it), its rank, the version bump,
the `ContentChange` message and the dedupe key. Either all of it is durable or none of it:
a failed write leaves no dedupe key behind, so the provider's retry is applied. A concurrent
write to the watched keys aborts the transaction, which is then retried (bounded).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import orjson
import structlog
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError, WatchError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, stop_after_delay
from tenacity.wait import wait_random

from core.redis import Keys
from integration.store import ContentChange
from webhooks.exceptions import WebhookStoreUnavailable
from webhooks.normalize import EntityChange

log = structlog.get_logger()

Status = Literal["applied", "duplicate", "stale"]

# Concurrent webhooks and sync pages abort each other's transaction; a retry takes ~0.5 ms.
_ATTEMPTS = 50
_BUDGET_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Status
    version: int  # content version after the write (or as read, when nothing was written)
    base: int = 0  # version before the write, for `status == "applied"`
    stored_rank: int = 0


class WebhookStore:
    def __init__(self, redis: Redis, keys: Keys, *, dedupe_ttl_seconds: int) -> None:
        self._redis = redis
        self._keys = keys
        self._dedupe_ttl = dedupe_ttl_seconds

    @property
    def revisions_key(self) -> str:
        return self._keys.revisions

    def seen_key(self, dedupe_id: str) -> str:
        return f"{self._keys.prefix}:webhooks:contentful:seen:{dedupe_id}"

    async def apply(self, change: EntityChange, dedupe_id: str) -> Outcome:
        """Apply `change` unless this delivery was seen or the store holds a newer rank.

        Raises `WebhookStoreUnavailable` when Redis fails or stays contended.
        """
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(WatchError),
                stop=stop_after_attempt(_ATTEMPTS) | stop_after_delay(_BUDGET_SECONDS),
                wait=wait_random(0, 0.002),
                reraise=True,
            ):
                with attempt:
                    return await self._attempt(change, self.seen_key(dedupe_id))
        except WatchError:
            raise WebhookStoreUnavailable("the store is busy; retry later") from None
        except (RedisError, OSError) as exc:
            error = type(exc).__name__
            log.warning("webhook.contentful.store_failed", error=error, detail=str(exc))
            raise WebhookStoreUnavailable("the store is unavailable; retry later") from None
        raise AssertionError("unreachable: AsyncRetrying either returns or raises")

    async def _attempt(self, change: EntityChange, seen: str) -> Outcome:
        keys = self._keys
        async with self._redis.pipeline(transaction=True) as pipe:
            await pipe.watch(seen, keys.version, self.revisions_key)
            version = int(await pipe.get(keys.version) or 0)
            if await pipe.exists(seen):
                return Outcome("duplicate", version)
            stored = await self._stored_rank(pipe, change.key)
            if change.rank <= stored:
                return Outcome("stale", version, stored_rank=stored)
            pipe.multi()  # type: ignore[no-untyped-call]
            self._queue_write(pipe, change, ContentChange(version, version + 1, (change.key,)))
            pipe.set(seen, b"1", ex=self._dedupe_ttl)
            results = await pipe.execute()
        return Outcome("applied", int(results[2]), base=version, stored_rank=stored)

    async def _stored_rank(self, pipe: Pipeline, key: str) -> int:
        """The newer of the last applied webhook's rank and the stored entity's revision."""
        recorded = await pipe.hget(self.revisions_key, key)
        raw_entity = await pipe.hget(self._keys.entities, key)
        rank = int(recorded) if recorded is not None else 0
        if raw_entity is not None:
            rank = max(rank, 2 * int(orjson.loads(raw_entity).get("revision") or 0))
        return rank

    def _queue_write(self, pipe: Pipeline, change: EntityChange, message: ContentChange) -> None:
        """Queue, in this order: entity write, rank, version bump (result 2), message."""
        keys = self._keys
        if change.entity is None:
            pipe.hdel(keys.entities, change.key)
        else:
            pipe.hset(keys.entities, change.key, orjson.dumps(change.entity.to_json()))
        pipe.hset(self.revisions_key, change.key, change.rank)
        pipe.incr(keys.version)
        pipe.publish(keys.content_channel, message.encode())
