"""Sync through the real contentful SDK against the loopback fake, into a real Redis."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from core.redis import Keys
from integration.client import ContentfulSource
from integration.config import ContentfulSettings
from integration.exceptions import ContentfulRequestRejected
from integration.store import ContentStore, SyncLock
from integration.sync import SyncService, sync_once_locked
from tests.fakes.contentful import FakeContentful

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "contentful"


def source_for(fake: FakeContentful, token: str | None = None) -> ContentfulSource:
    settings = ContentfulSettings(
        _env_file=None,
        space_id=fake.space_id,
        access_token=token or fake.token,
        environment=fake.environment,
        cda_url=fake.url,
        max_attempts=3,
        max_wait_seconds=2,
    )
    return ContentfulSource(settings)


def cf_items() -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(
        (REFERENCE / "cda-sync-initial-cfexampleapi.json").read_text()
    )["items"]
    return items


@pytest.fixture
def store(redis: Redis, keys: Keys) -> ContentStore:
    return ContentStore(redis, keys)


async def test_initial_sync_of_cfexampleapi_loads_every_item(store: ContentStore) -> None:
    with FakeContentful.from_sync_file(REFERENCE / "cda-sync-initial-cfexampleapi.json") as fake:
        result = await SyncService(source_for(fake), store).run()
    loaded = await store.load()
    assert result.mode == "initial"
    assert result.upserts == 14
    assert len(loaded.entities) == 14
    assert {loc.code for loc in loaded.locales} == {"en-US", "de-DE"}
    assert loaded.sync_token
    assert loaded.version >= 1


async def test_initial_sync_follows_every_next_page_url(store: ContentStore) -> None:
    with FakeContentful(pages=[cf_items()], page_size=4) as fake:
        result = await SyncService(source_for(fake), store).run()
        sync_calls = [q for path, q in fake.requests if path.endswith("/sync")]
    assert result.pages == 4
    assert len((await store.load()).entities) == 14
    assert sync_calls[0].get("initial") == "true"
    assert all("sync_token" in q for q in sync_calls[1:])


async def test_restart_resumes_from_the_stored_token(store: ContentStore) -> None:
    items = cf_items()
    with FakeContentful(pages=[items]) as fake:
        await SyncService(source_for(fake), store).run()
        changed = copy.deepcopy(items[0])
        changed["fields"]["name"]["en-US"] = "London, renamed"
        fake.publish(changed)
        # A new service instance stands for a restarted process: only the token is shared.
        result = await SyncService(source_for(fake), store).run()
        sync_calls = [q for path, q in fake.requests if path.endswith("/sync")]
    assert result.mode == "delta"
    assert result.upserts == 1
    assert "initial" not in sync_calls[-1]
    entity = (await store.load()).entities[f"Entry:{items[0]['sys']['id']}"]
    assert entity.fields["name"]["en-US"] == "London, renamed"
    assert entity.revision == items[0]["sys"]["revision"] + 1


async def test_delta_sync_applies_deletions(store: ContentStore) -> None:
    items = cf_items()
    gone = items[0]["sys"]["id"]
    with FakeContentful(pages=[items]) as fake:
        service = SyncService(source_for(fake), store)
        await service.run()
        version = await store.version()
        fake.delete(gone)
        result = await service.run()
    loaded = await store.load()
    assert result.deletions == 1
    assert f"Entry:{gone}" not in loaded.entities
    assert loaded.version > version


async def test_empty_delta_keeps_the_version(store: ContentStore) -> None:
    with FakeContentful(pages=[cf_items()]) as fake:
        service = SyncService(source_for(fake), store)
        await service.run()
        version = await store.version()
        result = await service.run()
    assert result.upserts == result.deletions == 0
    assert await store.version() == version


async def test_full_resync_prunes_what_the_space_lost(store: ContentStore) -> None:
    items = cf_items()
    with FakeContentful(pages=[items]) as fake:
        await SyncService(source_for(fake), store).run()
    with FakeContentful(pages=[items[1:]]) as fresh:
        result = await SyncService(source_for(fresh), store).run(full=True)
    assert result.pruned == 1
    assert len((await store.load()).entities) == 13


async def test_rejected_token_fails_clearly_and_keeps_the_store(store: ContentStore) -> None:
    with FakeContentful(pages=[cf_items()]) as fake:
        await SyncService(source_for(fake), store).run()
        before = await store.load()
        with pytest.raises(ContentfulRequestRejected, match="401"):
            await SyncService(source_for(fake, token="revoked-token"), store).run()
    after = await store.load()
    assert after.version == before.version
    assert after.sync_token == before.sync_token


async def test_rate_limited_page_is_retried_and_applied(store: ContentStore) -> None:
    with FakeContentful(pages=[cf_items()], page_size=7) as fake:
        fake.fail_next(429, headers={"X-Contentful-RateLimit-Reset": "0"})
        fake.fail_next(503)
        result = await SyncService(source_for(fake), store).run()
    assert result.upserts == 14


async def test_only_one_replica_syncs_at_a_time(
    redis: Redis, store: ContentStore, keys: Keys
) -> None:
    with FakeContentful(pages=[cf_items()]) as fake:
        service = SyncService(source_for(fake), store)
        held = SyncLock(redis, keys.sync_lock, ttl_seconds=30)
        assert await held.acquire()
        skipped = await sync_once_locked(service, SyncLock(redis, keys.sync_lock, ttl_seconds=30))
        await held.release()
        done = await sync_once_locked(service, SyncLock(redis, keys.sync_lock, ttl_seconds=30))
    assert skipped is None
    assert done is not None
    assert done.upserts == 14


async def test_rejected_sync_token_falls_back_to_a_full_resync(store: ContentStore) -> None:
    with FakeContentful(pages=[cf_items()]) as fake:
        await SyncService(source_for(fake), store).run()
        await store.write([], token="expired-or-garbage")
        result = await SyncService(source_for(fake), store).run()
    assert result.mode == "full"
    assert result.upserts == 14
    assert await store.sync_token() != "expired-or-garbage"
