"""A master of the cluster killed (`kill -9`) under a steady load of page views and tracking
events: page views keep answering (degraded at most while its replica takes over), no event the
tracking API accepted is lost (with `SEGMENT_INGEST_WAIT_REPLICAS=1`), and processing resumes
by itself."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import cast

import httpx
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster as ClusterClient

from core.redis import Keys
from tests.support.app import assemble
from tests.support.redis_cluster import RedisCluster
from tests.support.waiting import eventually
from tests.test_cluster import BASIC, PREFIX, Store, bridge


@dataclass
class Load:
    """What the load saw: assemble answers by (status, degraded), accepted events."""

    answers: Counter[tuple[int, bool]] = field(default_factory=Counter)
    accepted: list[tuple[str, str]] = field(default_factory=list)  # (visitor id, messageId)
    refused: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def page_views(self, client: httpx.AsyncClient) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            body = {"template": "home", "user": {"anonymousId": f"pv-{n % 50}"}}
            response = await client.post("/v1/assemble", json=body)
            degraded = response.status_code == 200 and bool(response.json().get("degraded"))
            self.answers[response.status_code, degraded] += 1
            await asyncio.sleep(0.005)

    async def events(self, client: httpx.AsyncClient) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            visitor, mid = f"fo-{n % 40}", f"m-fo-{n}"
            message = {"type": "track", "event": "Clicked", "anonymousId": visitor}
            batch = {"batch": [message | {"messageId": mid}]}
            response = await client.post("/v1/batch", json=batch, headers=BASIC)
            if response.status_code == 200:
                self.accepted.append((f"a:{visitor}", mid))
            else:
                self.refused += 1
            await asyncio.sleep(0.005)


async def missing(client: ClusterClient, keys: Keys, accepted: list[tuple[str, str]]) -> int:
    """Accepted messageIds not (yet) recorded as applied in their visitor's profile."""
    gone = 0
    for visitor, mid in accepted:
        if await client.zscore(keys.profile_seen(visitor), mid) is None:
            gone += 1
    return gone


async def test_a_master_killed_under_load_loses_no_accepted_event(
    redis_cluster: RedisCluster,
) -> None:
    client = ClusterClient.from_url(redis_cluster.url)
    await client.flushall(target_nodes=ClusterClient.PRIMARIES)
    store = Store(redis_cluster.url, True, cast(Redis, client), Keys(PREFIX, cluster=True))
    options = {"stream_shards": 3, "ingest_wait_replicas": 1, "claim_idle_ms": 500}
    try:
        async with bridge(store, **options) as (_, http):
            load = Load()
            running = [
                asyncio.create_task(load.page_views(http)),
                asyncio.create_task(load.events(http)),
            ]
            await eventually(lambda: _count(load), lambda n: n >= 40)
            victim = redis_cluster.masters()[0]
            redis_cluster.kill(victim)
            before = len(load.accepted)
            await asyncio.to_thread(redis_cluster.wait_failover)  # a replica took over
            redis_cluster.restart(victim)  # back as a replica: WAIT 1 can be met again
            await eventually(lambda: _count(load), lambda n: n >= before + 80, within=30)
            load.stop.set()
            await asyncio.gather(*running)

            assert {status for status, _ in load.answers} == {200}, load.answers
            answer = await eventually(
                lambda: assemble(http, user={"anonymousId": "after"}),
                lambda a: a["degraded"] is False,
                within=15,
            )
            assert answer["slots"]
            left = await eventually(
                lambda: missing(client, store.keys, load.accepted), lambda n: n == 0, within=30
            )
            assert left == 0
            assert len(load.accepted) >= before + 80, "ingest resumed after the failover"
    finally:
        await client.aclose()


async def _count(load: Load) -> int:
    return len(load.accepted)
