"""Operator routes: `POST /admin/sync` (against the loopback CDA fake through the real SDK),
`GET /admin/library`, `GET /admin/profiles/{id}`; each behind the admin token."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from redis.asyncio import Redis

from integration.store import SyncLock
from tests.assembly.support import ADMIN, ADMIN_TOKEN, decision_app, settle
from tests.fakes.contentful import FakeContentful
from tests.segment_sync.support import engage_track, post_signed, segment_settings
from tests.segment_sync.support import settle as settle_events
from tests.support.app import make_settings, running_app
from tests.support.demo import demo_items, publish, with_fields
from tests.support.redis_server import RedisServer

Bridge = tuple[FastAPI, httpx.AsyncClient]
ROUTES = [
    ("POST", "/admin/sync"),
    ("GET", "/admin/library"),
    ("GET", "/admin/profiles/u1"),
]


@pytest.fixture
def contentful() -> Iterator[FakeContentful]:
    with FakeContentful(space_id="microbridge-demo", pages=[list(demo_items().values())]) as fake:
        yield fake


@pytest.fixture
async def synced(
    contentful: FakeContentful, redis: Redis, redis_server: RedisServer
) -> AsyncIterator[Bridge]:
    """The app on the CDA fake: one sync at start-up, then only what a test asks for."""
    settings = make_settings(
        redis_server.url,
        space_id=contentful.space_id,
        access_token=contentful.token,
        cda_url=contentful.url,
        sync_interval_seconds=3600,
        max_attempts=1,
    )
    service = settings.service.model_copy(update={"admin_token": SecretStr(ADMIN_TOKEN)})
    async with running_app(dataclasses.replace(settings, service=service)) as running:
        yield running


@pytest.fixture
async def demo(redis: Redis, redis_server: RedisServer) -> AsyncIterator[Bridge]:
    async with decision_app(redis_server.url, admin=True) as running:
        yield running


class TestGuard:
    @pytest.mark.parametrize(("method", "path"), ROUTES)
    async def test_no_or_a_wrong_token_is_refused(
        self, demo: Bridge, method: str, path: str
    ) -> None:
        _, client = demo
        for headers in ({}, {"authorization": "Bearer wrong"}):
            answer = await client.request(method, path, headers=headers)
            assert answer.status_code == 401
            assert answer.json()["error"] == "Unauthorized"

    @pytest.mark.parametrize(("method", "path"), ROUTES)
    async def test_without_an_admin_token_the_routes_do_not_exist(
        self, redis: Redis, redis_server: RedisServer, method: str, path: str
    ) -> None:
        async with decision_app(redis_server.url) as (_, client):
            answer = await client.request(method, path, headers=ADMIN)
        assert (answer.status_code, answer.json()["error"]) == (404, "AdminDisabled")


class TestSync:
    async def test_a_delta_sync_brings_a_change_and_the_answer_reflects_it(
        self, synced: Bridge, contentful: FakeContentful
    ) -> None:
        app, client = synced
        before = app.state.services.integration.holder.library.version
        contentful.publish(with_fields("hero-cart", headline="Resynced by an operator"))
        answer = await client.post("/admin/sync", headers=ADMIN)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["status"], body["mode"], body["upserts"]) == ("done", "delta", 1)
        assert body["library"]["version"] == body["version"] > before
        assert set(body) >= {"pages", "deletions", "pruned", "kept", "skipped", "seconds"}
        page = await client.post(
            "/v1/assemble",
            json={"template": "home", "context": {"audiences": ["cart_abandoners"]}},
        )
        hero = page.json()["slots"][0]
        assert hero["entry"]["fields"]["headline"] == "Resynced by an operator"

    async def test_a_full_sync_installs_a_new_generation(self, synced: Bridge) -> None:
        app, client = synced
        old = app.state.services.integration.holder.generation.id
        answer = await client.post("/admin/sync", params={"full": "true"}, headers=ADMIN)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["mode"] == "full"
        assert body["generation"] == body["library"]["generation"] != old

    async def test_a_held_lease_answers_409(self, synced: Bridge, redis: Redis) -> None:
        app, client = synced
        other = SyncLock(redis, app.state.services.integration.keys.sync_lock, ttl_seconds=30)
        assert await other.acquire()
        try:
            answer = await client.post("/admin/sync", headers=ADMIN)
        finally:
            await other.release()
        assert answer.status_code == 409
        assert answer.json()["error"] == "SyncBusy"
        assert other.owner in answer.json()["detail"]

    async def test_a_slow_sync_answers_202_and_finishes_in_the_background(
        self, synced: Bridge, contentful: FakeContentful
    ) -> None:
        app, client = synced
        contentful.publish(with_fields("hero-cart", headline="Slow but sure"))
        contentful.delay_next(1.0, count=2)
        answer = await client.post("/admin/sync", params={"wait": "0.01"}, headers=ADMIN)
        assert answer.status_code == 202, answer.text
        assert answer.json()["status"] == "running"
        [running] = [
            t for t in app.state.services.integration.tasks if t.get_name() == "admin-sync"
        ]
        busy = await client.post("/admin/sync", params={"wait": "0.01"}, headers=ADMIN)
        assert busy.status_code == 409, "the background sync still holds the lease"
        progress = await running
        assert progress is not None
        assert progress.upserts == 1
        assert _headline(app.state.services.integration.holder) == "Slow but sure", (
            "the holder refreshed"
        )
        assert running not in app.state.services.integration.tasks

    @pytest.mark.parametrize(
        ("status", "answer", "error"),
        [(401, 502, "ContentfulRequestRejected"), (503, 503, "ContentfulUnavailable")],
    )
    async def test_contentful_failures_answer_json(
        self, synced: Bridge, contentful: FakeContentful, status: int, answer: int, error: str
    ) -> None:
        _, client = synced
        contentful.fail_next(status, count=5)
        response = await client.post("/admin/sync", headers=ADMIN)
        assert response.status_code == answer, response.text
        assert response.json()["error"] == error
        contentful.clear_faults()
        assert (await client.post("/admin/sync", headers=ADMIN)).status_code == 200

    async def test_a_bad_wait_is_refused(self, synced: Bridge) -> None:
        _, client = synced
        for wait in ("0", "301", "soon"):
            answer = await client.post("/admin/sync", params={"wait": wait}, headers=ADMIN)
            assert (answer.status_code, answer.json()["error"]) == (422, "InvalidRequest")


def _headline(holder: Any) -> Any:
    entry = holder.library.resolver.entry("hero-cart", "en-US")
    return entry["fields"]["headline"] if entry else None


class TestLibrary:
    async def test_lists_what_this_replica_serves(self, demo: Bridge) -> None:
        app, client = demo
        answer = await client.get("/admin/library", headers=ADMIN)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        holder = app.state.services.integration.holder
        assert body["version"] == holder.library.version
        assert (body["generation"], body["epoch"]) == (holder.generation.id, holder.epoch)
        assert body["issues"] == []
        home = next(t for t in body["templates"] if t["key"] == "home")
        assert home["slots"][0] == "home.hero"
        hero = next(s for s in body["slots"] if s["key"] == "home.hero")
        assert hero["variants"] == _listed("slot-home-hero")
        variant = next(v for v in body["variants"] if v["key"] == "hero-cart")
        assert variant["audiences"][0]["key"] == "cart-abandoners"
        assert set(variant) >= {"entry", "priority", "weight", "rollout", "schedule", "enabled"}
        for experiment in body["experiments"]:
            for arms in experiment["slots"]:
                assert arms["arms"][0] == "control"
                assert len(arms["weights"]) == len(arms["arms"])

    async def test_shows_an_audience_max_age_and_the_slot_list_order(self, demo: Bridge) -> None:
        app, client = demo
        items = demo_items()
        slot_id = "slot-home-hero"
        listed = list(reversed(items[slot_id]["fields"]["variants"]["en-US"]))
        await publish(
            app,
            with_fields("aud-cart-abandoners", maxAgeSeconds=600),
            with_fields(slot_id, variants=listed),
        )
        body = (await client.get("/admin/library", headers=ADMIN)).json()
        hero = next(s for s in body["slots"] if s["key"] == "home.hero")
        assert hero["variants"] == list(reversed(_listed(slot_id)))
        cart = next(v for v in body["variants"] if v["key"] == "hero-cart")
        assert cart["audiences"][0]["maxAgeSeconds"] == 600


def _listed(slot_id: str) -> list[str]:
    """The variant keys of a demo slot, in the editor's list order."""
    items = demo_items()
    ids = [link["sys"]["id"] for link in items[slot_id]["fields"]["variants"]["en-US"]]
    return [items[i]["fields"]["key"]["en-US"] for i in ids]


class TestProfiles:
    @pytest.fixture
    async def bridge(self, redis: Redis, redis_server: RedisServer) -> AsyncIterator[Bridge]:
        settings = make_settings(redis_server.url)
        service = settings.service.model_copy(update={"admin_token": SecretStr(ADMIN_TOKEN)})
        settings = dataclasses.replace(
            settings, service=service, segment_webhook=segment_settings()
        )
        async with running_app(settings) as running:
            yield running

    async def test_shows_audiences_with_their_age_and_the_decision_state(
        self, bridge: Bridge, redis: Redis
    ) -> None:
        app, client = bridge
        entered = datetime.now(UTC) - timedelta(minutes=10)
        track = engage_track("Audience Entered", "cart_abandoners", userId="u1")
        track["timestamp"] = entered.isoformat().replace("+00:00", "Z")
        assert (await post_signed(client, track)).status_code < 300
        await settle_events(redis)
        page = await client.post(
            "/v1/assemble", json={"template": "home", "user": {"id": "u1"}, "sessionId": "s1"}
        )
        assert page.status_code == 200
        await settle(app)
        answer = await client.get("/admin/profiles/u1", headers=ADMIN)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["visitor"] == {"userId": "u1"}
        [membership] = body["profile"]["audiences"]
        assert membership["key"] == "cart_abandoners"
        assert membership["confirmedAt"] == pytest.approx(entered.timestamp(), abs=0.01)
        assert 590 < membership["ageSeconds"] < 3600
        [session] = body["decisions"]["sessions"]
        assert session["slots"]["home.hero"] == "hero-cart"
        assert session["lastWriteAt"] is not None

    async def test_an_anonymous_visitor_by_flag(self, bridge: Bridge, redis: Redis) -> None:
        app, client = bridge
        page = await client.post(
            "/v1/assemble",
            json={"template": "home", "user": {"anonymousId": "a1"}, "sessionId": "s1",
                  "context": {"audiences": ["cart_abandoners"]}},
        )  # fmt: skip
        assert page.status_code == 200
        await settle(app)
        as_user = await client.get("/admin/profiles/a1", headers=ADMIN)
        assert (as_user.status_code, as_user.json()["error"]) == (404, "ProfileNotFound")
        answer = await client.get("/admin/profiles/a1?anonymous=true", headers=ADMIN)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["visitor"] == {"anonymousId": "a1"}
        assert body["decisions"]["sessions"][0]["slots"]["home.hero"] == "hero-cart"

    async def test_nothing_known_is_404_json(self, bridge: Bridge) -> None:
        _, client = bridge
        answer = await client.get("/admin/profiles/nobody", headers=ADMIN)
        assert answer.status_code == 404
        assert answer.json()["error"] == "ProfileNotFound"
        assert "nobody" in answer.json()["detail"]
