"""segment_sync's start: the tracking service, the profile store and (unless
`SEGMENT_CONSUMER_ENABLED=false`) one consumer task per stream shard, registered on the
lifespan's exit stack."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.redis import Keys
from core.settings import StoreSettings
from core.tasks import BackgroundTasks
from segment_sync.config import SegmentSettings
from segment_sync.profiles.store import RedisProfileStore
from segment_sync.stream.consumer import EventConsumer, Hook
from segment_sync.stream.pipeline import ensure_group
from segment_sync.tracking.service import TrackingService, consumer_client

log = structlog.get_logger()


@dataclass
class SegmentSyncServices:
    tracking: TrackingService
    profiles: RedisProfileStore


async def start_segment_sync(
    redis: Redis,
    keys: Keys,
    settings: SegmentSettings,
    store: StoreSettings,
    stack: AsyncExitStack,
    tasks: BackgroundTasks,
    *,
    embedded: bool,
    hooks: Sequence[Hook] = (),
) -> SegmentSyncServices:
    """`hooks` see every consumed event (app.py passes the experiment conversions)."""
    parts = SegmentSyncServices(
        tracking=TrackingService(redis, keys, settings),
        profiles=RedisProfileStore(
            redis,
            keys,
            ttl_seconds=settings.profile_ttl_seconds,
            tombstone_seconds=settings.stream_max_age_seconds,
        ),
    )
    try:
        await ensure_group(redis, keys, settings.consumer_group, shards=settings.stream_shards)
    except (RedisError, OSError) as exc:  # the consumer creates it once Redis answers
        log.warning("segment.consumer.group_not_created", error=type(exc).__name__)
    if settings.consumer_enabled:
        client = redis  # the embedded store is in-process: share it
        if not embedded and store.url is not None:
            client = consumer_client(store.url, store, settings.consumer_block_ms)
            stack.push_async_callback(client.aclose)
        consumers = [
            EventConsumer(client, keys, settings, hooks=hooks, shard=shard)
            for shard in range(settings.stream_shards)
        ]
        stack.push_async_callback(tasks.stop)  # before its client closes
        for shard, consumer in enumerate(consumers):
            tasks.spawn(consumer.run(), name=f"segment-consumer-{shard}")
    if not parts.tracking.enabled:
        log.info("segment.tracking.disabled", detail="SEGMENT_WRITE_KEYS unset")
    return parts
