"""One webhook's effect on the content, through the content store's one guarded writer.

The write itself (revision guard, entity write or removal, version bump, `ContentChange`
message) is `integration.store.ContentStore.write`, the same step a delta sync takes, so the
two cannot disagree about what is newer. This module adds what only webhooks need: the
delivery's dedupe key (`<p>:webhooks:contentful:seen:<sha256>`, with expiry), set in the same
atomic step, and the mapping of the result to `applied`, `duplicate` or `stale`.

The guard is per entity (a server-side script, no WATCH on shared keys), so a burst of
deliveries for different entries never aborts one another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import orjson
import structlog
from redis.exceptions import RedisError

from core.redis import Keys
from integration.store import ContentStore, ContentWrite
from webhooks.contentful.normalize import EntityChange
from webhooks.exceptions import WebhookStoreUnavailable

log = structlog.get_logger()

Status = Literal["applied", "duplicate", "stale"]


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Status
    version: int  # content version after the write (or as read, when nothing was written)
    base: int = 0  # version before the write, for `status == "applied"`
    stored_rank: int = 0


class WebhookStore:
    def __init__(self, content: ContentStore, keys: Keys, *, dedupe_ttl_seconds: int) -> None:
        self._content = content
        self._keys = keys
        self._dedupe_ttl = dedupe_ttl_seconds

    def seen_key(self, dedupe_id: str) -> str:
        return self._keys.contentful_seen(dedupe_id)

    async def apply(self, change: EntityChange, dedupe_id: str) -> Outcome:
        """Apply `change` unless this delivery was seen or the store holds a newer rank.

        Raises `WebhookStoreUnavailable` when Redis fails (the provider retries).
        """
        payload = orjson.dumps(change.entity.to_json()) if change.entity is not None else None
        write = ContentWrite(change.key, change.rank, payload)
        try:
            result = await self._content.write(
                [write], dedupe=(self.seen_key(dedupe_id), self._dedupe_ttl)
            )
        except (RedisError, OSError) as exc:
            error = type(exc).__name__
            log.warning("webhook.contentful.store_failed", error=error, detail=str(exc))
            raise WebhookStoreUnavailable("the store is unavailable; retry later") from None
        if result.status == "duplicate":
            return Outcome("duplicate", result.version)
        if change.key in result.skipped:
            return Outcome("stale", result.version, stored_rank=result.skipped[change.key])
        return Outcome("applied", result.version, base=result.base)
