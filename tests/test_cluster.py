"""The Redis-backed main flows against a single node and against a Redis Cluster (3 masters,
3 replicas): the assemble read with a profile, tracking API → consumer → profile (an identify
linking two ids in two slots), a Contentful webhook → visible content, kill switches,
experiment counters and results, the decision log, and stream shards."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster as ClusterClient

from app import AppSettings
from assembly.config import DecisionSettings
from core.cluster import slot
from core.redis import Keys
from segment_sync.config import SegmentSettings
from segment_sync.profiles.store import RedisProfileStore
from segment_sync.stream.pipeline import streams
from tests.support.app import assemble, by_slot, make_settings, running_app
from tests.support.redis_cluster import RedisCluster
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually
from tests.webhooks.test_contentful_webhook import cma_entry, deliver, with_webhooks

PREFIX = "mbtest"
WRITE_KEY = "wk-cluster-test-5d1e"
ADMIN_TOKEN = "admin-token-for-cluster-tests-0123456789"
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}", "x-admin-user": "alice"}
BASIC = {"authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}


@dataclass(frozen=True)
class Store:
    url: str
    cluster: bool
    client: Redis
    keys: Keys


@pytest.fixture(params=["node", "cluster"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """A flushed single node or a flushed cluster, with a client on it."""
    if request.param == "node":
        server: RedisServer = request.getfixturevalue("redis_server")
        client: Any = Redis.from_url(server.url)
        await client.flushall()
        url, cluster = server.url, False
    else:
        nodes: RedisCluster = request.getfixturevalue("redis_cluster")
        client = ClusterClient.from_url(nodes.url)
        await client.flushall(target_nodes=ClusterClient.PRIMARIES)
        url, cluster = nodes.url, True
    yield Store(url, cluster, client, Keys(PREFIX, cluster=cluster))
    await client.aclose()


def settings_for(store: Store, **segment: Any) -> AppSettings:
    settings = with_webhooks(make_settings(store.url, prefix=PREFIX, cluster=store.cluster))
    service = settings.service.model_copy(update={"admin_token": SecretStr(ADMIN_TOKEN)})
    events = SegmentSettings(
        _env_file=None,
        write_keys=SecretStr(WRITE_KEY),
        consumer_block_ms=50,
        claim_interval_seconds=0.2,
        **segment,
    )
    decisions = DecisionSettings(_env_file=None, log_sample_rate=1.0)
    return dataclasses.replace(settings, service=service, segment=events, decisions=decisions)


@asynccontextmanager
async def bridge(store: Store, **segment: Any) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with running_app(settings_for(store, **segment)) as running:
        yield running


def ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def dwell(anonymous_id: str, tag: str, *, user_id: str | None = None) -> list[dict[str, Any]]:
    """A product page open 45 s ago, then the home page: the demo's accessories rule."""
    who: dict[str, Any] = {"anonymousId": anonymous_id}
    if user_id:
        who["userId"] = user_id
    product = {"product_id": "sku-1001", "category": "shoes"}
    return [
        {"type": "page", "name": "Trail Runner X", "timestamp": ago(45), "messageId": f"{tag}1"}
        | who,
        {
            "type": "track",
            "event": "Product Viewed",
            "properties": product,
            "timestamp": ago(45),
            "messageId": f"{tag}2",
        }
        | who,
        {"type": "page", "name": "Home", "timestamp": ago(4), "messageId": f"{tag}3"} | who,
    ]


async def track(client: httpx.AsyncClient, batch: list[dict[str, Any]]) -> None:
    response = await client.post("/v1/batch", json={"batch": batch}, headers=BASIC)
    assert response.status_code == 200, response.text


def reco(answer: dict[str, Any]) -> Any:
    return by_slot(answer)["home.recommendation"]["variant"]


async def test_keys_written_together_share_one_slot_on_a_cluster(store: Store) -> None:
    keys = store.keys
    content = [keys.entities, keys.revisions, keys.version, keys.written, keys.staged_entities("g")]
    content += [keys.contentful_seen("d"), keys.no_dedupe, keys.epoch, keys.sync_token]
    switches = [keys.kill_switches, keys.kill_switch_marker, keys.kill_switch_audit]
    families = [content, switches, [keys.decision_log, keys.decision_log_ids]]
    families += [[keys.bandit_weights, keys.bandit_version, keys.bandit_history("t")]]
    families += [[keys.model_current, keys.model_artifact(1), keys.model_seq]]
    assert keys.events_shard(0, 1) == keys.events_stream, "one shard keeps the stream's name"
    if store.cluster:
        assert [len({slot(k) for k in family}) for family in families] == [1] * len(families)
    else:
        assert keys.entities == f"{PREFIX}:content:entities", "single-node names never change"
        assert keys.kill_switches == f"{PREFIX}:decisions:kill_switches"


async def test_tracking_reaches_the_profile_and_the_next_assemble(store: Store) -> None:
    async with bridge(store) as (_, client):
        assert reco(await assemble(client, user={"anonymousId": "a-dwell"})) is None
        await track(client, dwell("a-dwell", "m-dwell-"))
        answer = await eventually(
            lambda: assemble(client, user={"anonymousId": "a-dwell"}),
            lambda a: reco(a) == "reco-accessories",
        )
        assert by_slot(answer)["home.recommendation"]["source"] == "variant"
        assert answer["degraded"] is False


async def test_an_identify_links_two_ids_in_two_slots(store: Store) -> None:
    keys = store.keys
    user, anonymous = keys.profile("u:ann"), keys.profile("a:ann-browser")
    assert slot(user) != slot(anonymous), "the test needs two slots"
    async with bridge(store) as (_, client):
        await track(client, dwell("ann-browser", "m-ann-"))
        identify = {"type": "identify", "userId": "ann", "anonymousId": "ann-browser"}
        await track(client, [identify | {"messageId": "m-ann-id", "traits": {"plan": "pro"}}])
        profiles = RedisProfileStore(store.client, keys)
        found = await eventually(
            lambda: profiles.read("ann", None),
            lambda p: p is not None and p.traits.get("plan") == "pro",
        )
        assert found is not None
        assert "sku-1001" in found.signals.get("dwell", {})
        assert reco(await assemble(client, user={"id": "ann"})) == "reco-accessories"


async def test_a_webhook_publish_is_visible_at_once(store: Store) -> None:
    async with bridge(store) as (_, client):
        response = await deliver(client, cma_entry("hero-cart", revision=3, headline="Fresh"))
        assert response.status_code == 200, response.text
        answer = await assemble(client, context={"audiences": ["cart_abandoners"]})
        assert by_slot(answer)["home.hero"]["entry"]["fields"]["headline"] == "Fresh"
        raw = await store.client.hget(store.keys.entities, "Entry:hero-cart")
        stored = orjson.loads(raw or b"")
        assert stored["revision"] == 3
        again = await deliver(client, cma_entry("hero-cart", revision=3, headline="Fresh"))
        assert again.json()["status"] != "applied", "the dedupe key lives with the content"


async def test_a_kill_switch_serves_the_baseline_and_is_audited(store: Store) -> None:
    async with bridge(store) as (_, client):
        cart = {"context": {"audiences": ["cart_abandoners"]}}
        assert by_slot(await assemble(client, **cart))["home.hero"]["source"] == "variant"
        response = await client.post(
            "/admin/kill-switches/slot/home.hero", json={"reason": "wrong price"}, headers=ADMIN
        )
        assert response.status_code == 200, response.text
        hero = await eventually(
            lambda: assemble(client, **cart),
            lambda a: by_slot(a)["home.hero"]["source"] != "variant",
        )
        assert by_slot(hero)["home.hero"]["source"] == "baseline"
        assert await store.client.xlen(store.keys.kill_switch_audit) == 1


async def test_experiment_counters_and_results(store: Store) -> None:
    async with bridge(store) as (app, client):
        for n in range(12):
            await assemble(client, user={"id": f"exp-{n}"}, sessionId=f"s{n}")
        writer = app.state.services.assembly.decisions.writer

        async def counted() -> int:
            row: Any = await store.client.hgetall(store.keys.test_counts("hero-headline-test"))
            return sum(int(v) for k, v in row.items() if k.endswith(b":visitors"))

        assert await eventually(counted, lambda n: n == 12) == 12
        assert writer.queued == 0
        results = await client.get("/admin/experiments/hero-headline-test/results", headers=ADMIN)
        assert results.status_code == 200, results.text
        arms = results.json()["arms"]
        assert sum(arm["exposures"] for arm in arms) == 12


async def test_the_decision_log_finds_a_record_by_id_and_by_visitor(store: Store) -> None:
    async with bridge(store) as (app, client):
        answer = await assemble(client, user={"id": "u-log", "anonymousId": "a-log"})
        decision_id = answer["decisionId"]
        log = app.state.services.assembly.decision_log
        await eventually(lambda: _unwritten(log), lambda n: n == 0)
        record = await client.get(f"/admin/decisions/{decision_id}", headers=ADMIN)
        assert record.status_code == 200, record.text
        at = datetime.now(UTC).isoformat()
        for visitor in ("u-log", "a-log"):
            around = await client.get(
                "/admin/decisions", params={"visitor": visitor, "at": at}, headers=ADMIN
            )
            assert around.status_code == 200, around.text
            ids = [r["id"] for r in around.json()["records"]]
            assert decision_id in ids


async def _unwritten(log: Any) -> int:
    count: int = log.writer.unwritten
    return count


async def test_events_spread_over_stream_shards_and_are_all_applied(store: Store) -> None:
    async with bridge(store, stream_shards=3) as (_, client):
        visitors = [f"shard-{n}" for n in range(30)]
        for visitor in visitors:
            await track(client, dwell(visitor, f"m-{visitor}-"))
        names = streams(store.keys, 3)
        lengths = [await store.client.xlen(name) for name in names]
        assert sum(lengths) == 90
        assert all(lengths), lengths
        profiles = RedisProfileStore(store.client, store.keys)

        async def applied() -> int:
            found = [await profiles.read(None, v) for v in visitors]
            return sum(1 for p in found if p is not None and p.signals.get("dwell"))

        assert await eventually(applied, lambda n: n == len(visitors), within=20) == 30
        if store.cluster:
            assert len({slot(name) for name in names}) == 3


async def test_erasing_a_user_erases_its_linked_ids_in_other_slots(store: Store) -> None:
    keys = store.keys
    async with bridge(store) as (_, client):
        await track(client, dwell("eve-browser", "m-eve-"))
        identify = {"type": "identify", "userId": "eve", "anonymousId": "eve-browser"}
        await track(client, [identify | {"messageId": "m-eve-id", "traits": {"plan": "pro"}}])
        profiles = RedisProfileStore(store.client, keys)
        await eventually(
            lambda: profiles.read("eve", "eve-browser"),
            lambda p: p is not None and p.traits.get("plan") == "pro",
        )
        response = await client.delete("/v1/profiles/eve", headers=ADMIN)
        assert response.status_code == 204, response.text
        assert await profiles.read("eve", "eve-browser") is None
        for visitor in ("u:eve", "a:eve-browser"):
            assert not await store.client.exists(keys.profile(visitor))
            assert await store.client.exists(keys.profile_erased(visitor))
