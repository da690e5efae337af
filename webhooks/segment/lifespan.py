"""Lifespan wiring of the Segment webhook and the Profile API pull (called from app.py).

`start_segment` builds the webhook receiver (always; it answers 404 while no secret is set)
and, when `SEGMENT_PROFILE_SPACE_ID` and `SEGMENT_PROFILE_TOKEN` are set, one pooled
`httpx.AsyncClient` and the puller behind `ProfileBreaker.on_miss`. `aclose` undoes both.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import httpx
import structlog
from fastapi import FastAPI
from redis.asyncio import Redis

from core.redis import Keys
from segment_sync.pipeline import enqueue
from segment_sync.profile_api import ProfileApiClient, build_http_client
from segment_sync.profile_sync import ProfilePuller
from segment_sync.store import RedisProfileStore
from segment_sync.webhook_config import SegmentWebhookSettings
from webhooks.segment.service import SegmentWebhook

__all__ = ["SegmentServices", "start_segment"]

log = structlog.get_logger()


@dataclass
class SegmentServices:
    webhook: SegmentWebhook
    puller: ProfilePuller | None = None
    http: httpx.AsyncClient | None = None

    async def aclose(self) -> None:
        if self.puller is not None:
            await self.puller.aclose()
        if self.http is not None:
            await self.http.aclose()


def start_segment(
    app: FastAPI,
    redis: Redis,
    keys: Keys,
    settings: SegmentWebhookSettings,
    profiles: RedisProfileStore,
    *,
    stream_max_len: int | None = None,
) -> SegmentServices:
    """Set `app.state.segment_webhook` (and `segment_profiles`, and the assembly miss hook).

    `profiles` is the event pipeline's store (its TTL and erasure tombstones); `stream_max_len`
    caps the stream as the tracking API does (`SEGMENT_STREAM_MAX_LEN`).
    """
    append = functools.partial(enqueue, max_len=stream_max_len)
    webhook = SegmentWebhook(redis, keys, settings, enqueue=append, erase=profiles.erase)
    services = SegmentServices(webhook=webhook)
    app.state.segment_webhook = services.webhook
    app.state.segment_profiles = None
    if not services.webhook.enabled:
        log.info("segment.webhook.disabled", detail="SEGMENT_WEBHOOK_SECRETS unset")
    if settings.profile_configured:
        services.http = build_http_client(settings)
        client = ProfileApiClient(services.http, settings)
        services.puller = ProfilePuller(client, profiles, redis, keys, settings)
        app.state.segment_profiles = services.puller
        app.state.assembly.profiles.on_miss = services.puller.on_miss
        log.info("segment.profile_api.enabled", url=settings.profile_url)
    return services
