"""Three service processes (`cli.py serve`) over one Redis Cluster (issue 14, item 3, without
the proxy: each replica is called directly, which is what a round-robin proxy would do in turn):
a webhook received by one is visible on all, an admin kill switch reaches all, a visitor gets
the same experiment arm whichever replica answers, and all serve the store's content version."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio.cluster import RedisCluster as ClusterClient

from core.redis import Keys
from tests.support.redis_cluster import RedisCluster
from tests.webhooks.test_contentful_webhook import cma_entry, deliver
from tests.webhooks.test_replicas import converge, hero_of, replica_env, replicas

TOKEN = "admin-token-for-cluster-replicas-0123456789"
ADMIN = {"authorization": f"Bearer {TOKEN}", "x-admin-user": "alice"}
Replicas = tuple[list[httpx.AsyncClient], Keys, ClusterClient]


@pytest.fixture
async def three(redis_cluster: RedisCluster) -> AsyncIterator[Replicas]:
    prefix = f"mbrep{uuid.uuid4().hex[:8]}"
    env = replica_env(redis_cluster.url, prefix) | {
        "REDIS_CLUSTER": "true",
        "BRIDGE_ADMIN_TOKEN": TOKEN,
    }
    client = ClusterClient.from_url(redis_cluster.url)
    try:
        async with replicas(3, env) as clients:
            yield clients, Keys(prefix, cluster=True), client
    finally:
        await client.aclose()


async def test_three_replicas_over_a_cluster_agree(three: Replicas) -> None:
    clients, keys, redis = three
    first, second, third = clients

    published = await deliver(first, cma_entry("hero-cart", revision=3, headline="Everywhere"))
    assert published.json()["status"] == "applied"

    async def all_have_it() -> bool:
        heroes = [await hero_of(c) for c in clients]
        return all(h["entry"]["fields"]["headline"] == "Everywhere" for h in heroes)

    await converge(all_have_it)

    switched = await second.post(
        "/admin/kill-switches/slot/home.hero", json={"reason": "r"}, headers=ADMIN
    )
    assert switched.status_code == 200, switched.text

    async def all_switched() -> bool:
        sources = [(await hero_of(c))["source"] for c in clients]
        return sources == ["baseline"] * len(clients)

    await converge(all_switched)

    body = {"template": "home", "user": {"id": "same-everywhere"}, "sessionId": "s1"}
    arms = set()
    for client in (first, second, third, first):
        answer = (await client.post("/v1/assemble", json=body)).json()
        arms.add(tuple((s["slot"], s.get("variant"), s["source"]) for s in answer["slots"]))
    assert len(arms) == 1, arms

    versions = {(await c.get("/readyz")).json()["library"]["version"] for c in clients}
    assert versions == {int(await redis.get(keys.version) or 0)}
