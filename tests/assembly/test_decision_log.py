"""The decision log: ids on every answer, the logged record, the visitor lookup, and replay."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest
from redis.asyncio import Redis

from assembly.decision_log.ids import decision_ms, is_decision_id
from tests.assembly.faults import pause, private_redis, resume
from tests.assembly.support import ADMIN, NOW, Client, decision_app, logged, settle
from tests.support.demo import publish, with_fields
from tests.support.redis_server import RedisServer

CART = {"audiences": ["cart_abandoners"], "attributes": {"device": "mobile"}}
STREAM = "mbtest:decisions:log"


@pytest.fixture
async def bridge(redis: Redis, redis_server: RedisServer) -> AsyncIterator[Client]:
    async with decision_app(redis_server.url, admin=True) as running:
        yield running


async def page(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    body.setdefault("template", "home")
    response = await client.post("/v1/assemble", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def record(client: httpx.AsyncClient, decision_id: str) -> dict[str, Any]:
    response = await client.get(f"/admin/decisions/{decision_id}", headers=ADMIN)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def choices(slots: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(s["slot"], s["variant"], s["source"], s["reason"]) for s in slots]


class TestDecisionIds:
    async def test_every_answer_carries_a_distinct_time_ordered_id(self, bridge: Client) -> None:
        _, client = bridge
        ids = [(await page(client))["decisionId"] for _ in range(3)]
        assert len(set(ids)) == 3
        assert all(is_decision_id(i) for i in ids)
        assert {decision_ms(i) for i in ids} == {int(NOW.timestamp() * 1000)}

    async def test_unsampled_answers_have_ids_but_nothing_is_logged(
        self, redis: Redis, redis_server: RedisServer
    ) -> None:
        async with decision_app(redis_server.url, admin=True, log_sample_rate=0.0) as running:
            app, client = running
            answer = await page(client, user={"id": "u1"})
            await logged(app)
            missing = await client.get(f"/admin/decisions/{answer['decisionId']}", headers=ADMIN)
            assert missing.status_code == 404
            assert missing.json()["error"] == "DecisionNotFound"
            assert not await redis.exists(STREAM)


class TestRecord:
    async def test_record_holds_content_request_profile_state_and_outcome(
        self, bridge: Client
    ) -> None:
        app, client = bridge
        context = {"attributes": {"device": "mobile"}}
        body = {"user": {"id": "u1", "anonymousId": "a1"}, "sessionId": "s1", "context": context}
        await page(client, **body)  # assigns the experiment arm and marks the session
        answer = await page(client, **body)
        await logged(app)
        found = await record(client, answer["decisionId"])
        generation = app.state.services.integration.holder.generation
        assert found["content"] == {
            "version": answer["contentVersion"],
            "epoch": app.state.services.integration.holder.epoch,
            "generation": generation.id,
        }
        assert found["at"] == NOW.isoformat()
        assert found["request"]["user"] == {"id": "u1", "anonymousId": "a1"}
        assert found["request"]["context"]["attributes"] == {"device": "mobile"}
        assert found["store"]["answered"] is True
        assert found["store"]["counted"] is True
        assert "a:hero-headline-test" in found["state"]  # the sticky arm the second view read
        assert any(
            name.startswith(f"s:{found['store']['session']}:slot:") for name in found["state"]
        )
        assert choices(found["slots"]) == choices(answer["slots"])

    async def test_unknown_or_malformed_ids_answer_404_json(self, bridge: Client) -> None:
        _, client = bridge
        for decision_id in ("0" * 24, "not-an-id"):
            response = await client.get(f"/admin/decisions/{decision_id}", headers=ADMIN)
            assert response.status_code == 404
            assert response.json()["error"] == "DecisionNotFound"
        assert (await client.get("/admin/decisions/" + "0" * 24)).status_code == 401

    async def test_stream_is_capped(self, redis: Redis, redis_server: RedisServer) -> None:
        async with decision_app(redis_server.url, admin=True, log_max_len=100) as running:
            app, client = running
            for _ in range(400):
                await page(client, user={"anonymousId": "a-many"})
            await logged(app)
            assert await redis.xlen(STREAM) < 400
            assert await redis.zcard("mbtest:decisions:log:ids") == 100
            assert await redis.zcard("mbtest:{v:a:a-many}:decision_log") == 100
            assert await redis.ttl("mbtest:{v:a:a-many}:decision_log") > 0


class TestVisitorLookup:
    async def test_finds_a_visitors_decisions_around_a_time_by_either_id(
        self, bridge: Client
    ) -> None:
        app, client = bridge
        mine = [
            (await page(client, user={"id": "u7", "anonymousId": "a7"}))["decisionId"],
            (await page(client, user={"anonymousId": "a7"}))["decisionId"],
        ]
        await page(client, user={"id": "someone-else"})
        await logged(app)
        at = NOW + timedelta(seconds=30)
        by_user = await client.get(
            "/admin/decisions", params={"visitor": "u7", "at": at.isoformat()}, headers=ADMIN
        )
        assert [r["id"] for r in by_user.json()["records"]] == mine[:1]
        by_anonymous = await client.get(
            "/admin/decisions", params={"visitor": "a7", "at": at.isoformat()}, headers=ADMIN
        )
        assert sorted(r["id"] for r in by_anonymous.json()["records"]) == sorted(mine)
        later = await client.get(
            "/admin/decisions",
            params={"visitor": "a7", "at": (NOW + timedelta(hours=1)).isoformat(), "window": 60},
            headers=ADMIN,
        )
        assert later.json()["records"] == []


class TestReplay:
    async def test_replaying_a_logged_decision_gives_the_same_choices(self, bridge: Client) -> None:
        app, client = bridge
        body = {"user": {"id": "u2"}, "sessionId": "s2", "context": CART}
        await page(client, **body)
        answer = await page(client, **body)
        await logged(app)
        replay = await client.post(f"/admin/decisions/{answer['decisionId']}/replay", headers=ADMIN)
        assert replay.status_code == 200, replay.text
        result = replay.json()
        assert result["same"] is True
        assert all(row["same"] for row in result["slots"])
        assert result["content"]["sameVersion"] is True
        assert result["content"]["keptVersion"] is True

    async def test_replay_reads_the_recorded_state_not_the_live_one(
        self, redis: Redis, bridge: Client
    ) -> None:
        app, client = bridge
        body = {"user": {"id": "u3"}}
        hashed = (await page(client, **body))["slots"]
        cta = next(s for s in hashed if s["slot"] == "home.cta")["experiment"]
        await settle(app)
        other = {"arm": 1 - cta["arm"], "goal": None, "at": 0.0}
        other["variant"] = "control" if other["arm"] == 0 else "cta-headline-b"
        state = "mbtest:{v:u:u3}:decisions"
        await redis.hset(state, "a:hero-headline-test", orjson.dumps(other))
        answer = await page(client, **body)  # the stored arm, not the hashed one
        served = next(s for s in answer["slots"] if s["slot"] == "home.cta")["experiment"]
        assert served["arm"] == other["arm"]
        await logged(app)
        await redis.delete(state)  # live, the visitor would be bucketed by the hash again
        result = (
            await client.post(f"/admin/decisions/{answer['decisionId']}/replay", headers=ADMIN)
        ).json()
        assert result["same"] is True

    async def test_after_a_content_change_replay_uses_the_kept_version(
        self, bridge: Client
    ) -> None:
        app, client = bridge
        before = await page(client, user={"id": "u4"}, context=CART)
        await logged(app)
        await publish(app, with_fields("var-hero-cart", enabled=False))
        after = await page(client, user={"id": "u4"}, context=CART)
        assert after["contentVersion"] > before["contentVersion"]
        assert after["slots"][0]["variant"] != before["slots"][0]["variant"]
        result = (
            await client.post(f"/admin/decisions/{before['decisionId']}/replay", headers=ADMIN)
        ).json()
        assert result["same"] is True
        assert result["content"]["replayedOn"]["version"] == before["contentVersion"]
        assert result["content"]["keptVersion"] is True

    async def test_a_version_no_longer_kept_is_reported_as_a_mismatch(
        self, redis: Redis, redis_server: RedisServer
    ) -> None:
        async with decision_app(redis_server.url, admin=True, log_keep_libraries=1) as running:
            app, client = running
            before = await page(client, user={"id": "u5"}, context=CART)
            await logged(app)
            await publish(app, with_fields("var-hero-cart", enabled=False))
            response = await client.post(
                f"/admin/decisions/{before['decisionId']}/replay", headers=ADMIN
            )
            result = response.json()
        content = result["content"]
        assert (content["sameVersion"], content["keptVersion"]) == (False, False)
        assert content["replayedOn"]["version"] > before["contentVersion"]
        assert f"content version {before['contentVersion']} is no longer kept" in content["note"]
        hero = next(row for row in result["slots"] if row["slot"] == "home.hero")
        assert hero["same"] is False
        assert hero["recorded"]["variant"] == "hero-cart"
        assert result["same"] is False


async def test_erasing_a_visitor_erases_their_logged_decisions(
    bridge: Client, redis: Redis
) -> None:
    app, client = bridge
    gone = (await page(client, user={"id": "u-gone"}, context=CART))["decisionId"]
    kept = (await page(client, user={"id": "u-kept"}, context=CART))["decisionId"]
    await logged(app)
    assert await redis.xlen(STREAM) == 2
    response = await client.delete("/v1/profiles/u-gone", headers=ADMIN)
    assert response.status_code == 204
    assert (await client.get(f"/admin/decisions/{gone}", headers=ADMIN)).status_code == 404
    assert (await record(client, kept))["id"] == kept
    assert await redis.xlen(STREAM) == 1
    around = await client.get(
        "/admin/decisions", params={"visitor": "u-gone", "at": NOW.isoformat()}, headers=ADMIN
    )
    assert around.status_code == 200
    assert around.json()["records"] == []


async def test_a_record_names_the_admin_switches_in_force_when_it_was_decided(
    bridge: Client,
) -> None:
    app, client = bridge
    before = (await page(client, user={"id": "u-1"}, context=CART))["decisionId"]
    flipped = await client.post(
        "/admin/kill-switches/slot/home.hero", json={"reason": "wrong price"}, headers=ADMIN
    )
    assert flipped.status_code == 200, flipped.text
    during = (await page(client, user={"id": "u-1"}, context=CART))["decisionId"]
    cleared = await client.request(
        "DELETE", "/admin/kill-switches/slot/home.hero", json={"reason": "fixed"}, headers=ADMIN
    )
    assert cleared.status_code == 200, cleared.text
    after = (await page(client, user={"id": "u-1"}, context=CART))["decisionId"]
    await logged(app)
    assert (await record(client, before))["switches"] == []
    [switch] = (await record(client, during))["switches"]
    assert (switch["scope"], switch["key"], switch["by"], switch["reason"]) == (
        "slot",
        "home.hero",
        "alice",
        "wrong price",
    )
    assert (await record(client, after))["switches"] == []


async def test_shutdown_finishes_the_batch_the_writer_had_in_flight() -> None:
    """SIGTERM while the store is slow to answer: the records in flight and those queued
    behind them are all stored once the store answers, within shutdown's bound."""
    with private_redis() as server:
        async with decision_app(server.url, read_budget_seconds=0.05) as (app, client):
            ids = [(await page(client, user={"anonymousId": "a-live"}))["decisionId"]]
            await logged(app)
            pause(server)  # the store hangs: pages degrade, their records wait in flight
            for _ in range(3):
                ids.append((await page(client, user={"anonymousId": "a-late"}))["decisionId"])
            await asyncio.sleep(0.03)
            writer = app.state.services.assembly.decision_log.writer
            assert writer.unwritten == 3, "the late records are in flight or queued"
            asyncio.get_running_loop().call_later(0.2, resume, server)  # during shutdown
        stored = Redis.from_url(server.url)
        try:
            members: Any = await stored.zrange("mbtest:decisions:log:ids", 0, -1)
        finally:
            await stored.aclose()
        assert sorted(m.decode().split(":")[0] for m in members) == sorted(ids)
