"""With the event stream in shards (`SEGMENT_STREAM_SHARDS` > 1), training, insights and the
contextual bandit's fits read goal events from every shard, not the first alone."""

from __future__ import annotations

import time
import zlib
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from assembly.insights.reader import Bounds as InsightsBounds
from assembly.insights.reader import read_recorded
from assembly.learning.data import Bounds, Recorded, read_goals
from core.redis import Keys
from segment_sync.config import Ingest
from segment_sync.stream.pipeline import TRACKING, enqueue
from segment_sync.stream.pipeline import streams as shard_streams

SHARDS = 3
GOAL = "Order Completed"


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


async def plant(redis: Redis, keys: Keys, now: float, visitors: int = 60) -> None:
    events: list[dict[str, Any]] = [
        {"type": "track", "event": GOAL, "userId": f"u{i}", "timestamp": _iso(now - 600)}
        for i in range(visitors)
    ]
    await enqueue(redis, keys, events, TRACKING, ingest=Ingest(shards=SHARDS))


async def test_every_shard_holds_some_and_goal_reading_finds_them_all(
    redis: Redis, keys: Keys
) -> None:
    now = time.time()
    await plant(redis, keys, now)
    streams = shard_streams(keys, SHARDS)
    lengths = [await redis.xlen(stream) for stream in streams]
    assert all(lengths), "the visitors spread over the shards"
    assert sum(lengths) == 60
    recorded = Recorded([])
    goals = await read_goals(
        redis,
        keys,
        goals=[GOAL],
        since=now - 3600,
        bounds=Bounds(),
        recorded=recorded,
        streams=streams,
    )
    assert len(goals[GOAL]) == 60
    first_only = await read_goals(
        redis, keys, goals=[GOAL], since=now - 3600, bounds=Bounds(), recorded=Recorded([])
    )
    assert len(first_only[GOAL]) == lengths[0], "the default reads one stream, as before"


async def test_insights_read_every_shard(redis: Redis, keys: Keys) -> None:
    now = time.time()
    await plant(redis, keys, now)
    recorded = await read_recorded(
        redis,
        keys,
        window_seconds=3600,
        bounds=InsightsBounds(),
        now=now,
        streams=shard_streams(keys, SHARDS),
    )
    assert recorded.events_read == 60
    assert len(recorded.visitors) == 60


async def test_the_event_cap_is_shared_by_the_shards_and_reported_once(
    redis: Redis, keys: Keys
) -> None:
    now = time.time()
    await plant(redis, keys, now)
    recorded = Recorded([])
    await read_goals(
        redis,
        keys,
        goals=[GOAL],
        since=now - 3600,
        bounds=Bounds(max_events=25, batch=10),
        recorded=recorded,
        streams=shard_streams(keys, SHARDS),
    )
    assert recorded.events_read == 25
    assert recorded.truncated == ["max_events"]


async def test_a_window_longer_than_the_clocks_age_reads_everything(
    redis: Redis, keys: Keys
) -> None:
    """`--window 99999d` starts before 1970: read from the stream's start, not a Redis error."""
    now = time.time()
    await plant(redis, keys, now, visitors=5)
    streams = shard_streams(keys, SHARDS)
    recorded = await read_recorded(
        redis,
        keys,
        window_seconds=99_999 * 86400,
        bounds=InsightsBounds(),
        now=now,
        streams=streams,
    )
    assert (recorded.events_read, recorded.window_start) == (5, 0.0)
    goals = await read_goals(
        redis,
        keys,
        goals=[GOAL],
        since=-1e12,
        bounds=Bounds(),
        recorded=Recorded([]),
        streams=streams,
    )
    assert len(goals[GOAL]) == 5


async def test_one_visitors_messages_share_a_shard_picked_by_anonymous_id_then_user_id(
    redis: Redis, keys: Keys
) -> None:
    now = time.time()
    events: list[dict[str, Any]] = [
        {"type": "track", "event": "Clicked", "anonymousId": "anon-7", "userId": f"u{i}"}
        for i in range(12)
    ] + [{"type": "identify", "userId": "only-user", "timestamp": _iso(now)} for _ in range(4)]
    await enqueue(redis, keys, events, TRACKING, ingest=Ingest(shards=SHARDS))
    lengths = [await redis.xlen(stream) for stream in shard_streams(keys, SHARDS)]
    expected = [0] * SHARDS
    expected[zlib.crc32(b"anon-7") % SHARDS] += 12
    expected[zlib.crc32(b"only-user") % SHARDS] += 4
    assert lengths == expected
