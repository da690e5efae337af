"""Three replicas behind a round-robin balancer behave as one service (issue 14, replicas).

Three `cli.py serve` processes share the test Redis under a key prefix of their own and sync
the demo space from a loopback fake of Contentful's CDA every half second; the proxy of
tests/support/proxy.py stands in front of them. Requests meant to reach every replica open a
connection each (the proxy balances connections); checks poll each replica directly. The
webhooks' healing delta sync is put off (an on-demand sync runs where it is asked), so every
sync counted here is a periodic one. Latencies are measured in bench/replicas.py, not here.

Each test runs twice: over a single Redis node and over the test session's Redis Cluster
(3 masters, 3 replicas: tests/support/redis_cluster.py, `REDIS_CLUSTER=true`).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx
import orjson
import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster as ClusterClient

from core.redis import Keys
from integration.demo import DEMO_SPACE
from tests.fakes.contentful import FakeContentful
from tests.support.redis_cluster import RedisCluster
from tests.support.redis_server import RedisServer
from tests.support.replicas import Fleet, fleet
from tests.support.waiting import eventually
from tests.webhooks.test_contentful_webhook import SECRET, SPACE, VISITOR, cma_entry, deliver

PREFIX = "mbscale"
TOKEN = "replicas-admin-token-0123456789abcdef"
ADMIN = {"authorization": f"Bearer {TOKEN}", "x-admin-user": "oncall"}
SWITCHED = "kill switch: slot home.hero (admin)"
SYNC_RUNS = re.compile(r'^microbridge_sync_runs_total\{outcome="ok"\} (\S+)$', re.MULTILINE)
VISITORS = 60


@pytest.fixture(scope="module")
def space() -> Iterator[FakeContentful]:
    items = orjson.loads(DEMO_SPACE.read_bytes())["sync"]["items"]
    with FakeContentful(SPACE, token="cda-token", pages=[items]) as fake:
        yield fake


@dataclass(frozen=True)
class Store:
    url: str
    cluster: bool

    def client(self) -> Any:
        if self.cluster:
            return ClusterClient.from_url(self.url, decode_responses=True)
        return Redis.from_url(self.url, decode_responses=True)


@pytest.fixture(scope="module", params=["node", "cluster"])
def store(request: pytest.FixtureRequest) -> Store:
    if request.param == "node":
        server: RedisServer = request.getfixturevalue("redis_server")
        return Store(server.url, cluster=False)
    nodes: RedisCluster = request.getfixturevalue("redis_cluster")
    return Store(nodes.url, cluster=True)


@pytest.fixture(scope="module")
def replicas(
    store: Store, space: FakeContentful, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    env = {
        "REDIS_URL": store.url,
        "REDIS_CLUSTER": "true" if store.cluster else "false",
        "REDIS_KEY_PREFIX": PREFIX,
        "CONTENTFUL_SPACE_ID": SPACE,
        "CONTENTFUL_ACCESS_TOKEN": "cda-token",
        "CONTENTFUL_CDA_URL": space.url,
        "CONTENTFUL_SYNC_INTERVAL_SECONDS": "0.5",
        "CONTENTFUL_SYNC_LEASE_SECONDS": "6",
        "CONTENTFUL_WEBHOOK_SECRETS": SECRET,
        "CONTENTFUL_WEBHOOK_RESYNC_DELAY_SECONDS": "600",
        "CONTENTFUL_WEBHOOK_RESYNC_MAX_DELAY_SECONDS": "600",
        "BRIDGE_ADMIN_TOKEN": TOKEN,
        "BRIDGE_LOG_LEVEL": "warning",
    }
    with fleet(tmp_path_factory.mktemp("replicas"), env) as running:
        yield running


@pytest.fixture
async def balanced(replicas: Fleet) -> AsyncIterator[httpx.AsyncClient]:
    """A client on the proxy that opens a connection per request, so that the proxy balances
    every request; absolute URLs reach a replica directly."""
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=replicas.url, timeout=10.0, limits=limits) as client:
        yield client


async def hero(client: httpx.AsyncClient, base: str) -> dict[str, Any]:
    response = await client.post(f"{base}/v1/assemble", json=VISITOR)
    assert response.status_code == 200, response.text
    slot: dict[str, Any] = response.json()["slots"][0]
    return slot


async def on_every_replica(
    client: httpx.AsyncClient, replicas: Fleet, accept: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """Poll each replica directly until its home.hero passes `accept`."""
    seen = []
    for url in replicas.urls:
        seen.append(await eventually(partial(hero, client, url), accept))
    return seen


async def test_a_webhook_through_the_balancer_is_visible_on_every_replica(
    store: Store, replicas: Fleet, balanced: httpx.AsyncClient
) -> None:
    for revision, headline in enumerate(("Seen by all three", "And again", "Once more"), 40):
        before = sum(replicas.connections())
        payload = cma_entry("hero-cart", revision=revision, headline=headline)
        answer = await deliver(balanced, payload)
        assert answer.json()["status"] == "applied", answer.text
        assert sum(replicas.connections()) == before + 1, "the webhook went through the proxy"
        slots = await on_every_replica(balanced, replicas, partial(shows, headline))
        assert [s["variant"] for s in slots] == ["hero-cart"] * 3
    redis = store.client()
    try:
        stored = int(await redis.get(Keys(PREFIX, cluster=store.cluster).version) or 0)
    finally:
        await redis.aclose()
    for url in replicas.urls:  # every replica serves the store's content version
        ready = (await balanced.get(f"{url}/readyz")).json()
        assert ready["library"]["version"] == stored


def shows(headline: str, slot: dict[str, Any]) -> bool:
    return bool(slot["entry"]["fields"].get("headline") == headline)


async def test_a_kill_switch_set_through_the_balancer_applies_on_every_replica(
    replicas: Fleet, balanced: httpx.AsyncClient
) -> None:
    path = "/admin/kill-switches/slot/home.hero"
    response = await balanced.post(path, json={"reason": "bad image"}, headers=ADMIN)
    assert response.status_code == 200, response.text
    switched = await on_every_replica(balanced, replicas, lambda s: s["reason"] == SWITCHED)
    assert {s["source"] for s in switched} == {"baseline"}
    cleared = await balanced.request("DELETE", path, json={"reason": "fixed"}, headers=ADMIN)
    assert cleared.status_code == 200, cleared.text
    back = await on_every_replica(balanced, replicas, lambda s: s["reason"] != SWITCHED)
    assert {s["variant"] for s in back} == {"hero-cart"}


async def cta_of(client: httpx.AsyncClient, base: str, visitor: str) -> tuple[Any, ...]:
    body = {"template": "home", "user": {"id": visitor}}
    response = await client.post(f"{base}/v1/assemble", json=body)
    assert response.status_code == 200, response.text
    slot = next(s for s in response.json()["slots"] if s["slot"] == "home.cta")
    return slot["source"], slot["variant"], orjson.dumps(slot.get("experiment"))


async def test_experiment_assignments_are_the_same_whichever_replica_answers(
    replicas: Fleet, balanced: httpx.AsyncClient
) -> None:
    before = replicas.connections()
    answers: dict[str, set[tuple[Any, ...]]] = {}
    for number in range(VISITORS):
        visitor = f"visitor-{number}"
        asked = [await cta_of(balanced, "", visitor) for _ in range(3)]
        asked += [await cta_of(balanced, url, visitor) for url in replicas.urls]
        answers[visitor] = set(asked)
    assert all(len(seen) == 1 for seen in answers.values()), answers
    arms = {next(iter(seen))[2] for seen in answers.values()}
    assert len(arms) >= 2, f"every visitor in one arm: {arms}"
    spread = [n - m for n, m in zip(replicas.connections(), before, strict=True)]
    assert min(spread) >= VISITORS, f"not balanced over all three: {spread}"


async def sync_runs(client: httpx.AsyncClient, url: str) -> float:
    text = (await client.get(f"{url}/metrics")).text
    found = SYNC_RUNS.search(text)
    return float(found.group(1)) if found else 0.0


async def runs_by_replica(client: httpx.AsyncClient, replicas: Fleet) -> list[float]:
    return [await sync_runs(client, url) for url in replicas.urls]


async def syncs_from_now(client: httpx.AsyncClient, replicas: Fleet, count: int) -> list[float]:
    """Sync runs per replica from now until `count` more have run in all (counted per process
    by `/metrics`; a stopped replica counts none)."""
    live = [s.url for s in replicas.servers if s.proc.poll() is None]

    async def runs() -> list[float]:
        return [await sync_runs(client, url) if url in live else 0.0 for url in replicas.urls]

    before = await runs()
    after = await eventually(runs, lambda now: sum(now) - sum(before) >= count, within=30)
    return [a - b for a, b in zip(after, before, strict=True)]


async def leader_pid(store: Store) -> int:
    redis = store.client()
    try:
        owner = await redis.get(Keys(PREFIX, cluster=store.cluster).sync_leader)  # host:pid:token
    finally:
        await redis.aclose()
    return int(str(owner).split(":")[1]) if owner else 0


async def leading(client: httpx.AsyncClient, replicas: Fleet) -> list[int]:
    """The replicas whose `/readyz` says they lead the periodic sync."""
    found = []
    for index, server in enumerate(replicas.servers):
        if server.proc.poll() is None:
            ready = (await client.get(f"{server.url}/readyz")).json()
            found += [index] if ready["sync"]["leading"] else []
    return found


async def test_the_periodic_sync_runs_on_exactly_one_replica_and_hands_over_once(
    replicas: Fleet, store: Store, balanced: httpx.AsyncClient
) -> None:
    runs = await syncs_from_now(balanced, replicas, 4)
    assert sum(1 for r in runs if r) == 1, runs
    leader = next(i for i, r in enumerate(runs) if r)
    assert await leader_pid(store) == replicas.servers[leader].proc.pid
    assert await leading(balanced, replicas) == [leader]

    replicas.stop_one(leader)
    await eventually(
        partial(leader_pid, store), lambda pid: pid not in (0, replicas.servers[leader].proc.pid)
    )
    taken = await syncs_from_now(balanced, replicas, 4)
    assert sum(1 for r in taken if r) == 1, f"not exactly one heir: {taken}"
    heir = next(i for i, r in enumerate(taken) if r)
    assert heir != leader
    assert await leader_pid(store) == replicas.servers[heir].proc.pid
    assert await leading(balanced, replicas) == [heir]

    replicas.start_again(leader)
    later = await syncs_from_now(balanced, replicas, 4)
    assert [i for i, r in enumerate(later) if r] == [heir], "the heir keeps the lease"
