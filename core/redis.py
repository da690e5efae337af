"""The Redis connection: a real server when `REDIS_URL` is set, an embedded one otherwise.

Every key lives under one prefix (`REDIS_KEY_PREFIX`, default `mb`); see docs/storage.md.
Visitor keys carry a hash tag (`{v:<id>}`) so one visitor's keys share a Redis Cluster slot.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.settings import StoreSettings

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class Keys:
    """Names of every key we write, so that docs/storage.md has one place to match."""

    prefix: str = "mb"

    @property
    def entities(self) -> str:
        return f"{self.prefix}:content:entities"

    @property
    def revisions(self) -> str:
        """Entity key → rank of the last change applied (`2 * revision`, `+1` for a removal)."""
        return f"{self.prefix}:content:revisions"

    @property
    def locales(self) -> str:
        return f"{self.prefix}:content:locales"

    @property
    def sync_token(self) -> str:
        return f"{self.prefix}:content:sync_token"

    @property
    def version(self) -> str:
        return f"{self.prefix}:content:version"

    @property
    def synced_at(self) -> str:
        return f"{self.prefix}:content:synced_at"

    @property
    def sync_lock(self) -> str:
        return f"{self.prefix}:content:sync_lock"

    @property
    def content_channel(self) -> str:
        return f"{self.prefix}:content:changed"

    @property
    def written(self) -> str:
        """Sorted set: entity key scored by the content version of its last applied write."""
        return f"{self.prefix}:content:written"

    @property
    def epoch(self) -> str:
        """Marker set with the first complete generation; its loss means the store lost data."""
        return f"{self.prefix}:content:epoch"

    @property
    def generation(self) -> str:
        """JSON of the live generation: id, when it was built, how many entities it holds."""
        return f"{self.prefix}:content:generation"

    @property
    def sync_state(self) -> str:
        """Hash: the running sync (if any), the last success and the last error."""
        return f"{self.prefix}:content:sync_state"

    def staged_entities(self, generation: str) -> str:
        """A generation being built by a full sync; it expires if the sync dies."""
        return f"{self.prefix}:content:staged:{generation}:entities"

    def staged_ranks(self, generation: str) -> str:
        return f"{self.prefix}:content:staged:{generation}:ranks"

    def retired_entities(self, generation: str) -> str:
        """Scratch name of the entities a generation switch replaces (unlinked at once)."""
        return f"{self.prefix}:content:retired:{generation}"

    def profile(self, visitor_id: str) -> str:
        return f"{self.prefix}:{{v:{visitor_id}}}:profile"

    def profile_seen(self, visitor_id: str) -> str:
        """`messageId`s applied to a profile (segment_sync; a sorted set scored by time)."""
        return f"{self.prefix}:{{v:{visitor_id}}}:seen"

    def profile_erased(self, visitor_id: str) -> str:
        """Erasure tombstone: events accepted before it are not applied (segment_sync)."""
        return f"{self.prefix}:{{v:{visitor_id}}}:erased"

    def visitor_pattern(self, visitor_id: str) -> str:
        """SCAN pattern of every key of one visitor id (glob characters escaped)."""
        escaped = "".join(f"\\{c}" if c in "*?[]\\" else c for c in visitor_id)
        return f"{self.prefix}:{{v:{escaped}}}:*"

    @property
    def events_stream(self) -> str:
        return f"{self.prefix}:events"

    @property
    def events_dead(self) -> str:
        return f"{self.prefix}:events:dead"

    def decisions(self, visitor_id: str) -> str:
        """A visitor's decision state (assembly/decision_state.py), in the profile's slot."""
        return f"{self.prefix}:{{v:{visitor_id}}}:decisions"

    @property
    def decision_log(self) -> str:
        """Stream of logged decisions (assembly/decision_log), capped by length and age."""
        return f"{self.prefix}:decisions:log"

    @property
    def decision_log_ids(self) -> str:
        """Sorted set (one score, so ordered by name): `<decisionId>:<stream id>`."""
        return f"{self.prefix}:decisions:log:ids"

    def decision_log_visitor(self, visitor_id: str) -> str:
        """A visitor's logged decisions, `<decisionId>:<stream id>` scored by decision time."""
        return f"{self.prefix}:{{v:{visitor_id}}}:decision_log"


def connect(settings: StoreSettings) -> tuple[Redis, bool]:
    """Return a client and whether it is the embedded in-process store."""
    if settings.url is None:
        import fakeredis

        log.info("store.embedded", detail="REDIS_URL unset: using the in-process embedded store")
        return fakeredis.FakeAsyncRedis(), True
    client = Redis.from_url(
        settings.url,
        socket_timeout=settings.socket_timeout,
        socket_connect_timeout=settings.connect_timeout,
        max_connections=settings.max_connections,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.01), retries=2),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
    log.info("store.redis", url=_redact(settings.url))
    return client, False


def _redact(url: str) -> str:
    """Hide a password in a Redis URL before logging it."""
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"
