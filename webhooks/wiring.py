"""The webhooks' start: Contentful's and Segment's receivers and the Profile API pull, with
their task and closers registered on the lifespan's exit stack (called from app.py).

Contentful's receiver exists only with a signing secret (else its route answers 404).
Segment's is always built (it answers 404 while no secret is set); when
`SEGMENT_PROFILE_SPACE_ID` and `SEGMENT_PROFILE_TOKEN` are set, one pooled `httpx.AsyncClient`
and the puller that app.py hands to assembly as its profile-miss hook are built too.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

import structlog

from core.tasks import BackgroundTasks
from integration.config import ContentfulSettings
from integration.sync import sync_once_locked
from integration.wiring import IntegrationServices
from segment_sync.config import Ingest
from segment_sync.profile_api.client import ProfileApiClient, build_http_client
from segment_sync.profile_api.pulls import ProfilePuller
from segment_sync.profiles.store import RedisProfileStore
from segment_sync.stream.pipeline import ONE_STREAM, enqueue
from segment_sync.webhook_config import SegmentWebhookSettings
from webhooks.contentful.config import ContentfulWebhookSettings
from webhooks.contentful.service import ContentfulWebhookService, build_contentful_webhooks
from webhooks.segment.service import SegmentWebhook

log = structlog.get_logger()


@dataclass
class WebhookServices:
    contentful: ContentfulWebhookService | None
    """None: no CONTENTFUL_WEBHOOK_SECRETS, the endpoint is disabled."""
    segment: SegmentWebhook
    profiles: ProfilePuller | None = None
    """The Profile API pull; None unless it is configured."""

    @property
    def on_miss(self) -> Callable[[str], None] | None:
        """What assembly calls for a known user without a stored profile."""
        return self.profiles.on_miss if self.profiles is not None else None


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    contentful: ContentfulWebhookSettings
    segment: SegmentWebhookSettings
    stream_max_len: int | None = None
    """Caps the event stream as the tracking API does (`SEGMENT_STREAM_MAX_LEN`)."""
    ingest: Ingest = ONE_STREAM
    """Shards and replicas to wait for, as the tracking API (`SEGMENT_STREAM_SHARDS`, ...)."""


def start_webhooks(
    settings: WebhookSettings,
    contentful: ContentfulSettings,
    integration: IntegrationServices,
    profiles: RedisProfileStore,
    stack: AsyncExitStack,
    tasks: BackgroundTasks,
) -> WebhookServices:
    """`profiles` is the event pipeline's store (its TTL and erasure tombstones)."""
    parts = WebhookServices(
        contentful=_contentful(settings.contentful, contentful, integration),
        segment=_segment(settings, integration, profiles),
    )
    if settings.segment.profile_configured:
        http = build_http_client(settings.segment)
        stack.push_async_callback(http.aclose)
        client = ProfileApiClient(http, settings.segment)
        redis, keys = integration.redis, integration.keys
        parts.profiles = ProfilePuller(client, profiles, redis, keys, settings.segment)
        stack.push_async_callback(parts.profiles.aclose)
        log.info("segment.profile_api.enabled", url=settings.segment.profile_url)
    stack.push_async_callback(tasks.stop)
    if parts.contentful is not None:
        tasks.spawn(parts.contentful.resync.run(), name="contentful-resync")
    return parts


def _contentful(
    settings: ContentfulWebhookSettings,
    contentful: ContentfulSettings,
    integration: IntegrationServices,
) -> ContentfulWebhookService | None:
    return build_contentful_webhooks(
        settings,
        contentful,
        content=integration.content,
        keys=integration.keys,
        holder=integration.holder,
        sync=functools.partial(sync_once_locked, integration.sync, integration.lock),
    )


def _segment(
    settings: WebhookSettings, integration: IntegrationServices, profiles: RedisProfileStore
) -> SegmentWebhook:
    append = functools.partial(enqueue, max_len=settings.stream_max_len, ingest=settings.ingest)
    webhook = SegmentWebhook(
        integration.redis, integration.keys, settings.segment, enqueue=append, erase=profiles.erase
    )
    if not webhook.enabled:
        log.info("segment.webhook.disabled", detail="SEGMENT_WEBHOOK_SECRETS unset")
    return webhook
