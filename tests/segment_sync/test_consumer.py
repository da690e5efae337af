"""The stream consumer on a real Redis: exactly one effect per message whatever happens.

Messages are appended with `pipeline.enqueue` (the producer the tracking API and the Segment
webhook share). Every message adds 1 second of dwell time to one product of one visitor, so the
stored dwell totals prove that each message took effect exactly once.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from segment_sync.exceptions import MessagesRejected
from segment_sync.stream.consumer import EventConsumer
from segment_sync.stream.pipeline import enqueue, ensure_group
from tests.segment_sync.tracking_support import (
    KEYS,
    drained,
    events_settings,
    pending,
    profile,
    views,
)
from tests.support.redis_server import RedisServer

SETTINGS = events_settings(max_deliveries=2, consumer_batch_size=200)


def expected(events: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    return Counter((e["anonymousId"], e["properties"]["product_id"]) for e in events)


async def append(redis: Redis, events: list[dict[str, Any]]) -> None:
    for start in range(0, len(events), 500):
        await enqueue(redis, KEYS, events[start : start + 500], "test")


async def applied(redis: Redis, events: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    found: Counter[tuple[str, str]] = Counter()
    for visitor in {e["anonymousId"] for e in events}:
        stored = await profile(redis, anonymous_id=visitor)
        for product, seconds in (stored.signals.get("dwell", {}) if stored else {}).items():
            found[(visitor, product)] = int(seconds)
    return found


@pytest.fixture
async def worker_redis(redis: Redis, redis_server: RedisServer) -> AsyncIterator[Redis]:
    """A client of its own for consumers (so killing connections hits them, not the test)."""
    client = Redis.from_url(redis_server.url)
    await ensure_group(client, KEYS, SETTINGS.consumer_group)
    yield client
    await client.aclose()


async def consume(redis: Redis, *names: str) -> list[EventConsumer]:
    return [EventConsumer(redis, KEYS, SETTINGS, name=name) for name in names]


async def run_until_drained(redis: Redis, *consumers: EventConsumer, within: float = 20) -> None:
    tasks = [asyncio.create_task(c.run()) for c in consumers]
    try:
        await drained(redis, within=within)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_duplicates_take_effect_once(redis: Redis, worker_redis: Redis) -> None:
    events = views(600)
    await append(redis, events)
    await append(redis, events[:200])  # a client retried: the same messageIds again
    await append(redis, events[100:300])
    await run_until_drained(redis, *await consume(worker_redis, "c1"))
    assert await applied(redis, events) == expected(events)
    assert await pending(redis) == 0


async def test_several_consumers_share_the_load(redis: Redis, worker_redis: Redis) -> None:
    events = views(3000, visitors=60)
    await append(redis, events)
    consumers = await consume(worker_redis, "c1", "c2", "c3")
    # Step the consumers side by side (not cancelled mid-batch), so their counts are exact.
    for _ in range(100):
        if sum(c.handled for c in consumers) >= len(events):
            break
        await asyncio.gather(*(c.step() for c in consumers))
    assert await applied(redis, events) == expected(events)
    assert await pending(redis) == 0
    assert sum(c.handled for c in consumers) == len(events)
    assert sum(1 for c in consumers if c.handled) >= 2


async def test_consumers_contending_for_the_same_visitors_apply_each_event_once(
    redis: Redis, worker_redis: Redis
) -> None:
    events = views(3000, visitors=3, products=2)  # every batch of every consumer collides
    await append(redis, events)
    await run_until_drained(redis, *await consume(worker_redis, "c1", "c2", "c3"))
    assert await applied(redis, events) == expected(events)


async def test_a_dead_consumers_pending_entries_are_reclaimed(
    redis: Redis, worker_redis: Redis
) -> None:
    events = views(500)
    await append(redis, events)
    # A consumer that read 300 entries and died before acknowledging any of them.
    taken: Any = await redis.xreadgroup("profiles", "dead", {KEYS.events_stream: ">"}, count=300)
    assert len(taken[0][1]) == 300
    await run_until_drained(redis, *await consume(worker_redis, "alive"))
    assert await applied(redis, events) == expected(events)
    owners = {
        c["name"]: c["pending"] for c in await redis.xinfo_consumers(KEYS.events_stream, "profiles")
    }
    assert owners[b"dead"] == 0


async def test_consumers_killed_mid_stream_lose_nothing(redis: Redis, worker_redis: Redis) -> None:
    events = views(4000, visitors=40)
    await append(redis, events)
    rng = random.Random(7)
    for round_ in range(8):  # cancelled at random points: mid-read, mid-transaction, pre-ack
        (consumer,) = await consume(worker_redis, f"doomed-{round_}")
        task = asyncio.create_task(consumer.run())
        await asyncio.sleep(rng.uniform(0.005, 0.06))
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await run_until_drained(redis, *await consume(worker_redis, "survivor"))
    assert await applied(redis, events) == expected(events)


async def test_connections_killed_mid_stream_lose_nothing(
    redis: Redis, worker_redis: Redis
) -> None:
    events = views(3000, visitors=30)
    await append(redis, events)
    consumers = await consume(worker_redis, "c1", "c2")
    tasks = [asyncio.create_task(c.run()) for c in consumers]
    try:
        for _ in range(6):
            await asyncio.sleep(0.03)
            await redis.client_kill_filter(_type="normal", skipme=True)
        await drained(redis)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert await applied(redis, events) == expected(events)


async def test_poison_entries_go_to_the_dead_letter_stream(
    redis: Redis, worker_redis: Redis
) -> None:
    events = views(50)
    await append(redis, events[:25])
    unreadable = await redis.xadd(KEYS.events_stream, {"m": b"{not json", "src": b"test"})
    anonymous = orjson.dumps({"type": "track", "event": "No ids", "messageId": "poison"})
    failing = await redis.xadd(KEYS.events_stream, {"m": anonymous, "src": b"test"})
    await append(redis, events[25:])
    await run_until_drained(redis, *await consume(worker_redis, "c1"))
    assert await applied(redis, events) == expected(events), "the rest was never blocked"
    rows: Any = await redis.xrange(KEYS.events_dead)
    dead = {fields[b"id"]: fields for _, fields in rows}
    assert set(dead) == {unreadable, failing}
    assert dead[unreadable][b"deliveries"] == b"1"
    assert b"unreadable" in dead[unreadable][b"error"]
    assert int(dead[failing][b"deliveries"]) == SETTINGS.max_deliveries + 1
    assert dead[failing][b"m"] == anonymous


async def test_processed_entries_are_trimmed_by_age_unprocessed_never(
    redis: Redis, worker_redis: Redis
) -> None:
    settings = events_settings(stream_max_age_seconds=0.2)
    events = views(1000)
    await append(redis, events)
    await asyncio.sleep(0.3)
    idle = EventConsumer(worker_redis, KEYS, settings, name="idle")
    await idle.housekeeping()
    assert await redis.xlen(KEYS.events_stream) == 1000, "nothing was delivered yet"
    await run_until_drained(redis, EventConsumer(worker_redis, KEYS, settings, name="c1"))
    await asyncio.sleep(0.3)
    await idle.housekeeping()
    assert await redis.xlen(KEYS.events_stream) < 200, "approximate: whole nodes go"
    assert await applied(redis, events) == expected(events)


async def test_enqueue_refuses_invalid_events_and_appends_nothing(redis: Redis) -> None:
    with pytest.raises(MessagesRejected) as caught:
        await enqueue(redis, KEYS, [*views(2), {"type": "track", "event": "x"}], "test")
    assert caught.value.rejected == [
        {"index": 2, "messageId": None, "detail": "a message needs a userId or an anonymousId"}
    ]
    assert await redis.exists(KEYS.events_stream) == 0


async def test_a_delete_message_erases_the_user(redis: Redis, worker_redis: Redis) -> None:
    identify = {"type": "identify", "userId": "u-del", "anonymousId": "v0", "traits": {"a": 1}}
    await append(redis, [*views(10), identify])
    await run_until_drained(redis, *await consume(worker_redis, "c1"))
    assert await profile(redis, user_id="u-del") is not None
    await append(redis, [{"type": "delete", "userId": "u-del"}, *views(3, tag="after")])
    await run_until_drained(redis, *await consume(worker_redis, "c1"))
    assert await profile(redis, user_id="u-del") is None
    assert await profile(redis, anonymous_id="v0") is None, "the linked id went too"
    assert await profile(redis, anonymous_id="after0") is not None
