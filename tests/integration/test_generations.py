"""Library generations: nothing half-built is ever served, a dead sync leaves the last complete
generation, a lost store keeps the replica serving, and the last good library survives on disk.

Real parts throughout: the real `contentful` SDK against the loopback fake CDA, a real Redis,
and for the crash the real CLI in a subprocess, killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from assembly.killswitch import KillSwitch, KillSwitchStore
from core.redis import Keys
from integration.normalize import normalize_items
from integration.store import ContentStore, SyncLock, writes_of
from integration.sync import SyncService, sync_once_locked
from tests.fakes.contentful import FakeContentful
from tests.integration.test_sync import REFERENCE, source_for
from tests.support.app import make_settings, running_app
from tests.support.demo import demo_items
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
SPACE = "microbridge-demo"
VISITOR = {"template": "home", "context": {"audiences": ["cart_abandoners"]}}


def settings_for(fake: FakeContentful, redis_url: str, **extra: Any) -> Any:
    return make_settings(
        redis_url, space_id=fake.space_id, access_token=fake.token, cda_url=fake.url, **extra
    )


def slow_fake(delay: float, page_size: int = 2) -> FakeContentful:
    items = list(demo_items().values())
    fake = FakeContentful(space_id=SPACE, pages=[items], page_size=page_size)
    fake.delay_next(delay, count=len(items) // page_size + 4)
    return fake


async def sample(client: httpx.AsyncClient) -> tuple[int, int, dict[str, Any]]:
    ready = await client.get("/readyz")
    answer = await client.post("/v1/assemble", json=VISITOR)
    return ready.status_code, answer.status_code, answer.json()


async def test_a_first_sync_is_invisible_until_complete(
    redis: Redis, redis_server: RedisServer
) -> None:
    with slow_fake(0.1) as fake:
        settings = settings_for(fake, redis_server.url)
        async with running_app(settings, ready=False) as (app, client):
            samples = []
            while not app.state.services.integration.first_sync.is_set():
                samples.append(await sample(client))
                await asyncio.sleep(0.02)
            samples.extend([await sample(client) for _ in range(5)])
    before = [s for s in samples if s[0] == 503]
    after = [s for s in samples if s[0] == 200]
    waiting = [b for _, code, b in before if code == 503 and b["error"] == "ContentUnavailable"]
    assert len(waiting) >= 5, "the sync was slow enough to be watched"
    assert after, "ready once the generation is installed"
    assert all(code != 404 for _, code, _ in samples), "no template is ever missing"
    # Between a 503 /readyz and its assemble the generation may land: then content, whole.
    assert all(code == 503 or b["slots"][0]["source"] == "variant" for _, code, b in before)
    assert all(code == 200 and body["slots"][0]["source"] == "variant" for _, code, body in after)
    assert samples.index(after[0]) == len(before), "never unready again once ready"


async def test_readyz_reports_generation_age_and_sync_state(
    redis: Redis, redis_server: RedisServer
) -> None:
    with slow_fake(0.0) as fake:
        async with running_app(settings_for(fake, redis_server.url)) as (_, client):
            ready = (await client.get("/readyz")).json()
    library, sync = ready["library"], ready["sync"]
    assert library["generation"]
    assert library["epoch"]
    assert 0 <= library["ageSeconds"] < 60
    assert sync["lastMode"] == "initial"
    assert sync["lastSuccessAt"] is not None
    assert sync["lastError"] is None


async def test_a_sync_killed_midway_leaves_the_last_generation_and_no_long_lock(
    redis: Redis, keys: Keys, redis_server: RedisServer
) -> None:
    store = ContentStore(redis, keys)
    with slow_fake(0.0) as fake:
        await SyncService(source_for(fake), store).run()
        before = await store.load()
        fake.delay_next(0.3, count=40)
        env = {
            **os.environ,
            "REDIS_URL": redis_server.url,
            "REDIS_KEY_PREFIX": keys.prefix,
            "CONTENTFUL_SPACE_ID": fake.space_id,
            "CONTENTFUL_ACCESS_TOKEN": fake.token,
            "CONTENTFUL_CDA_URL": fake.url,
            "CONTENTFUL_SYNC_LEASE_SECONDS": "2",
        }
        child = await asyncio.create_subprocess_exec(
            sys.executable, "cli.py", "sync", "--full", cwd=ROOT, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            await eventually(lambda: _staged_pages(redis, keys, minimum=2), within=60)
        finally:
            child.send_signal(signal.SIGKILL)
            await asyncio.wait_for(child.wait(), 10)
        after_crash = await store.load()
        assert after_crash.entities == before.entities
        assert after_crash.generation == before.generation
        assert await redis.get(keys.sync_lock), "the dead process's lease is still there"
        fake.clear_faults()
        started = time.monotonic()
        service, lock = SyncService(source_for(fake), store), SyncLock(redis, keys.sync_lock, 2)
        result = None
        while result is None:
            result = await sync_once_locked(service, lock, full=True)
            await asyncio.sleep(0.1)
    assert time.monotonic() - started < 5, "waited one short lease, not a minute"
    assert result.mode == "full"
    assert (await store.load()).generation != before.generation


async def _staged_pages(redis: Redis, keys: Keys, *, minimum: int) -> bool:
    staged = [k async for k in redis.scan_iter(f"{keys.prefix}:content:staged:*:entities")]
    return bool(staged) and await redis.hlen(staged[0]) >= minimum


async def test_a_lagging_delta_never_rolls_back_a_newer_webhook(redis: Redis, keys: Keys) -> None:
    store = ContentStore(redis, keys)
    items = demo_items()
    with FakeContentful(space_id=SPACE, pages=[list(items.values())]) as fake:
        service = SyncService(source_for(fake), store)
        await service.run()
        hero = items["hero-cart"]
        newer = _revised(hero, hero["sys"]["revision"] + 2, "From the webhook")
        applied = await store.write(writes_of(normalize_items([newer])))
        assert applied.applied == ("Entry:hero-cart",)
        fake.publish(_revised(hero, hero["sys"]["revision"], "Lagging sync"))
        result = await service.run()
        assert result.skipped == 1
        again = await store.write(writes_of(normalize_items([newer])))
    stored = (await store.load()).entities["Entry:hero-cart"]
    assert stored.fields["headline"]["en-US"] == "From the webhook"
    assert again.status == "unchanged"
    assert "Entry:hero-cart" in again.skipped


def _revised(item: dict[str, Any], revision: int, headline: str) -> dict[str, Any]:
    copy: dict[str, Any] = orjson.loads(orjson.dumps(item))
    copy["sys"]["revision"] = revision
    copy["fields"]["headline"] = {"en-US": headline}
    return copy


async def test_a_store_that_loses_its_data_keeps_the_replica_serving_and_resyncs(
    redis: Redis, keys: Keys, redis_server: RedisServer
) -> None:
    switches = KillSwitchStore(redis, keys)
    with slow_fake(0.0) as fake:
        async with running_app(settings_for(fake, redis_server.url)) as (app, client):
            holder, watcher = (
                app.state.services.integration.holder,
                app.state.services.assembly.decisions.watcher,
            )
            first = holder.epoch
            await switches.set(KillSwitch("slot", "home.banner", "ops", "broken banner", 1.0))
            await eventually(lambda: _has_switches(watcher))
            fake.delay_next(0.2, count=30)  # the rebuild takes a while: watch the gap
            redis_server.stop()
            redis_server.start()
            await eventually(lambda: _lost(client))
            served = await client.post("/v1/assemble", json=VISITOR)
            metrics = (await client.get("/metrics")).text
            await eventually(lambda: _epoch_changed(holder, first), within=30)
            ready = await client.get("/readyz")
            await eventually(lambda: _stored_again(switches))
            page = (await client.post("/v1/assemble", json=VISITOR)).json()
    assert served.status_code == 200
    assert served.json()["slots"][0]["source"] == "variant"
    assert "microbridge_store_lost 1.0" in metrics
    assert ready.status_code == 200
    assert ready.json()["store"]["lostSince"] is None
    banner = next(s for s in page["slots"] if s["slot"] == "home.banner")
    assert banner["reason"].startswith("kill switch")


async def _has_switches(watcher: Any) -> bool:
    return bool(watcher.board.all())


async def _stored_again(switches: KillSwitchStore) -> bool:
    try:
        return bool((await switches.load()).all())
    except (RedisError, OSError):
        return False


async def _lost(client: httpx.AsyncClient) -> bool:
    ready = await client.get("/readyz")
    return bool(ready.json()["store"]["lostSince"])


async def _epoch_changed(holder: Any, first: str | None) -> bool:
    return holder.epoch not in (None, first)


async def test_a_replica_never_installs_an_older_version(redis: Redis, keys: Keys) -> None:
    from integration.service import LibraryHolder

    store = ContentStore(redis, keys)
    with slow_fake(0.0) as fake:
        await SyncService(source_for(fake), store).run()
    holder = LibraryHolder(store, link_depth=2)
    assert await holder.refresh()
    live = holder.library
    assert live is not None
    await redis.set(keys.version, live.version - 1)  # a stale message or a replica behind
    assert not await holder.refresh()
    assert holder.library is live


async def test_a_cold_start_without_store_or_contentful_serves_the_last_good_snapshot(
    redis: Redis, redis_server: RedisServer, tmp_path: Path
) -> None:
    snapshot = tmp_path / "data" / "last-good.json"
    with slow_fake(0.0) as fake:
        settings = settings_for(fake, redis_server.url, snapshot_path=snapshot, max_attempts=1)
        async with running_app(settings) as (app, _):
            await eventually(lambda: _exists(snapshot))
        await redis.flushall()
        fake.fail_next(503, count=100)
        async with running_app(settings, ready=False) as (app, client):
            await asyncio.wait_for(app.state.services.integration.first_sync.wait(), 30)
            answer = await client.post("/v1/assemble", json=VISITOR)
            unknown = await client.post("/v1/assemble", json={"template": "nowhere"})
            ready = await client.get("/readyz")
    assert answer.status_code == 200
    body = answer.json()
    assert body["degraded"] is True
    assert {s["source"] for s in body["slots"]} == {"fallback"}
    assert body["slots"][0]["entry"]["fields"]["headline"]
    assert (unknown.status_code, unknown.json()["error"]) == (503, "ContentUnavailable")
    assert ready.status_code == 503
    assert ready.json()["sync"]["lastError"]["error"] == "ContentfulUnavailable"


async def test_a_snapshot_of_another_space_is_never_served(
    redis: Redis, redis_server: RedisServer, tmp_path: Path
) -> None:
    snapshot = tmp_path / "last-good.json"
    with slow_fake(0.0) as fake:
        settings = settings_for(fake, redis_server.url, snapshot_path=snapshot)
        async with running_app(settings):
            await eventually(lambda: _exists(snapshot))
    await redis.flushall()
    with FakeContentful(space_id="another-space", pages=[[]]) as other:
        other.fail_next(503, count=100)
        settings = settings_for(other, redis_server.url, snapshot_path=snapshot, max_attempts=1)
        async with running_app(settings, ready=False) as (app, client):
            await asyncio.wait_for(app.state.services.integration.first_sync.wait(), 30)
            answer = await client.post("/v1/assemble", json=VISITOR)
    assert (answer.status_code, answer.json()["error"]) == (503, "ContentUnavailable")


async def _exists(path: Path) -> bool:
    return await asyncio.to_thread(path.exists)


async def test_a_sync_deletion_removes_whatever_revision_is_stored(
    redis: Redis, keys: Keys
) -> None:
    """The Sync API's deletion items carry their own revision (1 in the recorded page, whatever
    was deleted): a deletion never loses against the stored publish revision."""
    page = orjson.loads((REFERENCE / "cda-sync-page-deleted-items.json").read_bytes())
    deleted = page["items"][0]
    assert deleted["sys"]["revision"] == 1
    store = ContentStore(redis, keys)
    key = f"Entry:{deleted['sys']['id']}"
    published = _entry(deleted["sys"]["id"], revision=5)
    await store.write(writes_of(normalize_items([published])))
    removed = await store.write(writes_of(normalize_items([deleted])))
    assert removed.applied == (key,)
    assert key not in (await store.load()).entities
    late = await store.write(writes_of(normalize_items([published])))
    assert key in late.skipped
    newer = await store.write(writes_of(normalize_items([_entry(deleted["sys"]["id"], 6)])))
    assert newer.applied == (key,)


def _entry(entry_id: str, revision: int) -> dict[str, Any]:
    return {
        "sys": {
            "type": "Entry",
            "id": entry_id,
            "revision": revision,
            "contentType": {"sys": {"type": "Link", "linkType": "ContentType", "id": "cat"}},
            "updatedAt": "2026-11-20T10:00:00.000Z",
        },
        "fields": {"name": {"en-US": f"revision {revision}"}},
    }
