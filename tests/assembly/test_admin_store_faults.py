"""Admin routes while Redis is down or hung: JSON answers, 503 with Retry-After, and a global
kill switch that is in force at once and reaches the store (and the replicas) once it is back."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from redis.asyncio import Redis

from assembly.killswitch import KillSwitchStore
from core.redis import Keys
from tests.assembly.faults import pause, private_redis, resume
from tests.assembly.support import ADMIN, assemble, decision_app
from tests.support.redis_server import RedisServer

FAST: dict[str, Any] = {"read_budget_seconds": 0.05, "kill_switch_poll_seconds": 0.2}
REASON = {"reason": "incident 42"}


async def stored_global(server: RedisServer) -> dict[str, Any] | None:
    """The global switch as the store holds it, waiting up to 10 s for it to land."""
    redis = Redis.from_url(server.url)
    try:
        store = KillSwitchStore(redis, Keys("mbtest"))
        for _ in range(200):
            switch = await store.get("global", "")
            if switch is not None:
                return switch.to_json()
            await asyncio.sleep(0.05)
        return None
    finally:
        await redis.aclose()


def assert_store_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "StoreUnavailable"
    assert int(response.headers["retry-after"]) > 0


async def test_admin_answers_json_while_the_store_is_down() -> None:
    with private_redis() as server:
        async with decision_app(server.url, admin=True, **FAST) as (_, client):
            assert (await client.get("/admin/kill-switches?audit=0", headers=ADMIN)).json() == {
                "switches": [],
                "audit": [],
                "storeAvailable": True,
                "unstored": None,
            }
            server.stop()
            listed = await client.get("/admin/kill-switches", headers=ADMIN)
            slot = await client.post(
                "/admin/kill-switches/slot/home.hero", json=REASON, headers=ADMIN
            )
            lifted = await client.request(
                "DELETE", "/admin/kill-switches/slot/home.hero", json=REASON, headers=ADMIN
            )
            results = await client.get(
                "/admin/experiments/hero-headline-test/results", headers=ADMIN
            )
            rollouts = await client.get("/admin/rollouts", headers=ADMIN)
    assert listed.status_code == 200
    assert listed.json()["storeAvailable"] is False
    for response in (slot, lifted, results):
        assert_store_unavailable(response)
    assert rollouts.json()["rollouts"] == [], "the demo has none: nothing to read"
    assert "may still be applied" in slot.json()["detail"]


async def test_global_switch_while_the_store_is_hung_applies_here_then_is_stored() -> None:
    with private_redis() as server:
        async with decision_app(server.url, admin=True, **FAST) as (_, client):
            pause(server)
            response = await client.post("/admin/kill-switches/global", json=REASON, headers=ADMIN)
            slots = await assemble(client, user={"id": "u-1"})
            listed = (await client.get("/admin/kill-switches", headers=ADMIN)).json()
            resume(server)
            stored = await stored_global(server)
            after = (await client.get("/admin/kill-switches", headers=ADMIN)).json()
    assert response.status_code == 202
    body = response.json()
    assert body["stored"] is False
    assert "in force on this replica only" in body["detail"]
    assert {s["reason"] for s in slots.values()} == {"kill switch: global (admin)"}
    assert listed["storeAvailable"] is False
    assert listed["unstored"]["reason"] == "incident 42"
    assert stored is not None
    assert (stored["by"], stored["reason"]) == ("alice", "incident 42")
    assert after["unstored"] is None
    assert [a["action"] for a in after["audit"]] == ["set"]


async def test_global_switch_set_while_down_reaches_a_restarted_store_and_other_replicas() -> None:
    with private_redis() as server:
        async with decision_app(server.url, admin=True, **FAST) as (_, client):
            server.stop()
            response = await client.post("/admin/kill-switches/global", json=REASON, headers=ADMIN)
            server.start()
            stored = await stored_global(server)
        async with decision_app(server.url, **FAST) as (_, other):
            slots = await assemble(other, user={"id": "u-1"})
    assert response.status_code == 202
    assert stored is not None
    assert {s["reason"] for s in slots.values()} == {"kill switch: global (admin)"}


async def test_an_unstored_global_switch_can_be_lifted_while_the_store_is_down() -> None:
    with private_redis() as server:
        async with decision_app(server.url, admin=True, **FAST) as (app, client):
            server.stop()
            await client.post("/admin/kill-switches/global", json=REASON, headers=ADMIN)
            lifted = await client.request(
                "DELETE", "/admin/kill-switches/global", json=REASON, headers=ADMIN
            )
            slots = await assemble(
                client, user={"id": "u-1"}, context={"audiences": ["cart_abandoners"]}
            )
            server.start()
            await asyncio.sleep(0.5)  # several watcher rounds: nothing must be stored
            switches = await KillSwitchStore(
                app.state.services.integration.redis, Keys("mbtest")
            ).load()
    assert lifted.status_code == 200
    assert lifted.json()["cleared"]["reason"] == "incident 42"
    assert slots["home.hero"]["variant"] == "hero-cart"
    assert switches.everything is None


async def test_a_stored_global_switch_is_not_lifted_without_the_store() -> None:
    with private_redis() as server:
        async with decision_app(server.url, admin=True, **FAST) as (_, client):
            set_ = await client.post("/admin/kill-switches/global", json=REASON, headers=ADMIN)
            server.stop()
            lifted = await client.request(
                "DELETE", "/admin/kill-switches/global", json=REASON, headers=ADMIN
            )
            slots = await assemble(client, user={"id": "u-1"})
    assert set_.status_code == 200
    assert set_.json()["stored"] is True
    assert_store_unavailable(lifted)
    assert {s["reason"] for s in slots.values()} == {"kill switch: global (admin)"}
