"""Contentful webhooks: verify, classify, apply at once, and schedule a debounced delta sync.

`ContentfulWebhookService.receive` answers only after the effect is durable in Redis. The
replica that received the webhook patches its own snapshot before answering (it does not wait
for its own pub/sub echo); the other replicas patch on the `ContentChange` message. Every applied
webhook (and every ContentType change) also asks `DebouncedResync` for a delta sync, so a lost
or reordered webhook still converges to what the sync token says.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from redis.exceptions import RedisError
from tenacity import AsyncRetrying, retry_if_result, stop_after_attempt, wait_fixed

from core.cancellation import reraise_if_cancelling
from core.redis import Keys
from integration.config import ContentfulSettings
from integration.exceptions import ContentfulError
from integration.service import LibraryHolder
from integration.store import ContentChange, ContentStore
from integration.sync import SyncProgress
from webhooks.contentful.config import DEMO_ENVIRONMENT, DEMO_SPACE_ID, ContentfulWebhookSettings
from webhooks.contentful.normalize import (
    TOPIC_HEADER,
    EntityChange,
    Target,
    Topic,
    dedupe_id,
    entity_change,
    parse_body,
    parse_topic,
    payload_target,
)
from webhooks.contentful.store import Outcome, WebhookStore
from webhooks.exceptions import WebhookError
from webhooks.metrics import CONTENTFUL_WEBHOOKS
from webhooks.verification import verify_contentful_any

log = structlog.get_logger()

Status = Literal["applied", "duplicate", "stale", "ignored", "resync"]
SyncRun = Callable[[], Awaitable[SyncProgress | None]]


@dataclass(frozen=True, slots=True)
class ContentfulRequest:
    """A webhook request as received: `path` is the raw target (path and query, not decoded),
    `headers` have lowercase names, `body` is the raw bytes."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class WebhookAnswer:
    status: Status
    topic: str | None = None
    entity: str | None = None
    revision: int | None = None
    version: int | None = None
    detail: str | None = None

    def to_json(self) -> dict[str, Any]:
        fields = {
            "status": self.status,
            "topic": self.topic,
            "entity": self.entity,
            "revision": self.revision,
            "version": self.version,
            "detail": self.detail,
        }
        return {name: value for name, value in fields.items() if value is not None}


class DebouncedResync:
    """Turns a burst of requests into one delta sync, `delay` after the last request.

    A steady stream still syncs at least every `max_delay` seconds. A request that arrives
    while a sync runs causes one more sync afterwards. When another replica holds the sync lock,
    the sync is tried again after `delay` (a bounded number of times).
    """

    def __init__(
        self, sync: SyncRun, *, delay: float, max_delay: float, lock_attempts: int = 10
    ) -> None:
        self._sync = sync
        self._delay = delay
        self._max_delay = max(delay, max_delay)
        self._lock_attempts = lock_attempts
        self._wake = asyncio.Event()
        self._first: float | None = None
        self._last = 0.0

    def request(self) -> None:
        now = time.monotonic()
        if self._first is None:
            self._first = now
        self._last = now
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            await self._settle()
            self._wake.clear()
            self._first = None
            await self._sync_once()

    async def _settle(self) -> None:
        """Sleep until no request came for `delay`, or `max_delay` passed since the first."""
        while self._first is not None:
            deadline = min(self._last + self._delay, self._first + self._max_delay)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await asyncio.sleep(remaining)

    async def _sync_once(self) -> None:
        retrying = AsyncRetrying(
            retry=retry_if_result(lambda result: result is None),  # None: the lock is taken
            stop=stop_after_attempt(self._lock_attempts),
            wait=wait_fixed(max(self._delay, 0.1)),
            retry_error_callback=lambda _: None,
        )
        try:
            result: SyncProgress | None = await retrying(self._sync)
        except (ContentfulError, RedisError, OSError) as exc:
            reraise_if_cancelling(exc)
            log.error("webhook.contentful.resync_failed", error=type(exc).__name__, detail=str(exc))
            return
        if result is None:
            log.warning("webhook.contentful.resync_skipped", reason="the sync lock stayed taken")
        else:
            log.info("webhook.contentful.resync_done", mode=result.mode, version=result.version)


def configured_target(contentful: ContentfulSettings) -> Target:
    """The space and environment webhooks must name: the synced ones, or the demo space."""
    if contentful.configured and contentful.space_id:
        return Target(contentful.space_id, contentful.environment)
    return Target(DEMO_SPACE_ID, DEMO_ENVIRONMENT)


class ContentfulWebhookService:
    def __init__(
        self,
        settings: ContentfulWebhookSettings,
        *,
        target: Target,
        store: WebhookStore,
        holder: LibraryHolder,
        resync: DebouncedResync,
    ) -> None:
        self._secrets = settings.secret_list
        self._ttl_seconds = settings.ttl_seconds
        self._target = target
        self._store = store
        self._holder = holder
        self.resync = resync

    async def receive(self, request: ContentfulRequest) -> WebhookAnswer:
        """Verify and handle one delivery; raises a `WebhookError` (4xx, or 503) otherwise."""
        try:
            answer = await self._receive(request)
        except WebhookError as exc:
            CONTENTFUL_WEBHOOKS.labels(answer=exc.name).inc()
            log.info("webhook.contentful.rejected", error=exc.name, detail=exc.detail)
            raise
        CONTENTFUL_WEBHOOKS.labels(answer=answer.status).inc()
        log.info(f"webhook.contentful.{answer.status}", **answer.to_json())
        return answer

    async def _receive(self, request: ContentfulRequest) -> WebhookAnswer:
        verify_contentful_any(
            secrets=self._secrets,
            method=request.method,
            path=request.path,
            headers=request.headers,
            body=request.body,
            ttl_seconds=self._ttl_seconds,
        )
        topic = parse_topic(request.headers.get(TOPIC_HEADER))
        payload = parse_body(request.body)
        if topic.effect == "ignore":
            return WebhookAnswer("ignored", topic.raw, detail="topic is not one we act on")
        target = payload_target(payload)
        if target != self._target:
            detail = f"{target} is not the configured {self._target}"
            return WebhookAnswer("ignored", topic.raw, detail=detail)
        if topic.effect == "resync":
            self.resync.request()
            return WebhookAnswer("resync", topic.raw, detail="a delta sync is scheduled")
        return await self._apply(topic, entity_change(payload, topic), request)

    async def _apply(
        self, topic: Topic, change: EntityChange, request: ContentfulRequest
    ) -> WebhookAnswer:
        outcome = await self._store.apply(change, dedupe_id(request.headers, request.body))
        if outcome.status == "applied":
            await self._patch_snapshot(change, outcome)
            self.resync.request()
        return WebhookAnswer(
            outcome.status,
            topic.raw,
            entity=change.key,
            revision=change.revision,
            version=outcome.version,
            detail=_detail(outcome),
        )

    async def _patch_snapshot(self, change: EntityChange, outcome: Outcome) -> None:
        """Refresh this replica's snapshot now; a failure here is left to the watcher."""
        step = ContentChange(outcome.base, outcome.version, (change.key,))
        try:
            if not await self._holder.patch(step, {change.key: change.entity}):
                await self._holder.refresh()
        except (RedisError, OSError) as exc:
            log.warning("webhook.contentful.snapshot_refresh_failed", error=type(exc).__name__)


def _detail(outcome: Outcome) -> str | None:
    if outcome.status == "duplicate":
        return "this delivery was already applied"
    if outcome.status == "stale":
        return "the store holds this revision or a newer one"
    return None


def build_contentful_webhooks(
    settings: ContentfulWebhookSettings,
    contentful: ContentfulSettings,
    *,
    content: ContentStore,
    keys: Keys,
    holder: LibraryHolder,
    sync: SyncRun,
) -> ContentfulWebhookService | None:
    """The service, or None when no signing secret is configured (endpoint disabled).

    `sync` runs one delta sync under the sync lock (None when another replica holds it).
    """
    if not settings.enabled:
        log.info("webhook.contentful.disabled", detail="CONTENTFUL_WEBHOOK_SECRETS unset")
        return None
    store = WebhookStore(content, keys, dedupe_ttl_seconds=settings.dedupe_ttl_seconds)
    resync = DebouncedResync(
        sync, delay=settings.resync_delay_seconds, max_delay=settings.resync_max_delay_seconds
    )
    return ContentfulWebhookService(
        settings,
        target=configured_target(contentful),
        store=store,
        holder=holder,
        resync=resync,
    )
