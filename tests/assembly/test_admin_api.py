"""`/admin/*` of the decision engine: kill switches, results, rollouts and the guardrail."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from assembly.experiments.stats import chance_to_beat, relative_uplift, srm, two_sided_p
from assembly.store import record_conversion
from assembly.targeting.bucketing import gb_hash
from tests.assembly.support import (
    ADMIN,
    ADMIN_TOKEN,
    Client,
    assemble,
    decision_app,
    runtime,
    settle,
)
from tests.support.demo import publish, with_fields
from tests.support.redis_server import RedisServer

SWITCHES = "mbtest:decisions:kill_switches"
AUDIT = "mbtest:decisions:audit"
CART = {"audiences": ["cart_abandoners"]}


@pytest.fixture
async def bridge(redis: Redis, redis_server: RedisServer) -> AsyncIterator[Client]:
    async with decision_app(redis_server.url, admin=True) as running:
        yield running


async def snapshot(redis: Redis) -> tuple[Any, ...]:
    return (
        sorted(await redis.keys("*")),
        await redis.hgetall(SWITCHES),
        await redis.xlen(AUDIT) if await redis.exists(AUDIT) else 0,
    )


async def hero(client: Any, **body: Any) -> dict[str, Any]:
    return (await assemble(client, context=CART, **body))["home.hero"]


class TestKillSwitches:
    async def test_slot_switch_overrides_content_and_is_logged_with_who_and_why(
        self, bridge: Client
    ) -> None:
        _, client = bridge
        assert (await hero(client))["variant"] == "hero-cart"
        set_ = await client.post(
            "/admin/kill-switches/slot/home.hero", json={"reason": "wrong price"}, headers=ADMIN
        )
        assert set_.status_code == 200, set_.text
        assert set_.json()["by"] == "alice"
        slot = await hero(client)
        assert (slot["source"], slot["reason"]) == (
            "baseline",
            "kill switch: slot home.hero (admin)",
        )
        listed = (await client.get("/admin/kill-switches", headers=ADMIN)).json()
        assert [(s["scope"], s["key"], s["by"], s["reason"]) for s in listed["switches"]] == [
            ("slot", "home.hero", "alice", "wrong price")
        ]
        cleared = await client.request(
            "DELETE",
            "/admin/kill-switches/slot/home.hero",
            json={"reason": "price fixed"},
            headers={**ADMIN, "x-admin-user": "bob"},
        )
        assert cleared.status_code == 200
        assert (await hero(client))["variant"] == "hero-cart"
        audit = (await client.get("/admin/kill-switches", headers=ADMIN)).json()["audit"]
        assert [(a["action"], a["by"], a["reason"]) for a in audit] == [
            ("clear", "bob", "price fixed"),
            ("set", "alice", "wrong price"),
        ]

    async def test_global_template_and_variant_switches(self, bridge: Client) -> None:
        _, client = bridge
        await client.post(
            "/admin/kill-switches/variant/hero-cart", json={"reason": "r"}, headers=ADMIN
        )
        slot = await hero(client)
        assert (slot["source"], slot["reason"]) == (
            "baseline",
            "kill switch: variant hero-cart (admin)",
        )
        both = await hero(client, user={"anonymousId": "v"}, sessionId="x")
        assert both["reason"] == "kill switch: variant hero-cart (admin)"
        await client.post("/admin/kill-switches/template/home", json={"reason": "r"}, headers=ADMIN)
        assert (await hero(client))["reason"] == "kill switch: template home (admin)"
        await client.post("/admin/kill-switches/global", json={"reason": "r"}, headers=ADMIN)
        answer = await assemble(client, context=CART)
        assert {s["reason"] for s in answer.values()} == {"kill switch: global (admin)"}
        for path in ("global", "template/home", "variant/hero-cart"):
            response = await client.request(
                "DELETE", f"/admin/kill-switches/{path}", json={"reason": "over"}, headers=ADMIN
            )
            assert response.status_code == 200, response.text
        assert (await hero(client))["variant"] == "hero-cart"

    async def test_switches_are_persisted_and_loaded_at_startup(
        self, bridge: Client, redis_server: RedisServer
    ) -> None:
        _, client = bridge
        await client.post(
            "/admin/kill-switches/slot/home.hero", json={"reason": "r"}, headers=ADMIN
        )
        async with decision_app(redis_server.url) as (_, second):
            slot = await hero(second)
        assert slot["reason"] == "kill switch: slot home.hero (admin)"

    @pytest.mark.parametrize(
        ("method", "path", "body", "status", "error"),
        [
            ("POST", "/admin/kill-switches/slot/home.hero", {}, 422, "InvalidRequest"),
            ("POST", "/admin/kill-switches/slot/home.hero", {"reason": ""}, 422, "InvalidRequest"),
            (
                "POST",
                "/admin/kill-switches/slot/home.hero",
                {"reason": "x" * 501},
                422,
                "InvalidRequest",
            ),
            (
                "POST",
                "/admin/kill-switches/slot/home.hero",
                {"reason": "r", "by": "x"},
                422,
                "InvalidRequest",
            ),
            ("POST", "/admin/kill-switches/page/home", {"reason": "r"}, 422, "InvalidRequest"),
            ("POST", "/admin/kill-switches/slot/home.nope", {"reason": "r"}, 404, "UnknownTarget"),
            ("POST", "/admin/kill-switches/variant/nope", {"reason": "r"}, 404, "UnknownTarget"),
            ("POST", "/admin/kill-switches/template/nope", {"reason": "r"}, 404, "UnknownTarget"),
            ("DELETE", "/admin/kill-switches/slot/home.hero", {"reason": "r"}, 404, "SwitchNotSet"),
            ("DELETE", "/admin/kill-switches/global", {"reason": "r"}, 404, "SwitchNotSet"),
            ("DELETE", "/admin/kill-switches/global", None, 422, "InvalidRequest"),
        ],
    )
    async def test_bad_input_is_refused_and_changes_nothing(
        self,
        bridge: Client,
        redis: Redis,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        status: int,
        error: str,
    ) -> None:
        _, client = bridge
        before = await snapshot(redis)
        response = await client.request(method, path, json=body, headers=ADMIN)
        assert response.status_code == status, response.text
        assert response.json()["error"] == error
        assert response.json()["detail"]
        assert await snapshot(redis) == before

    async def test_admin_needs_the_token(self, bridge: Client, redis: Redis) -> None:
        _, client = bridge
        before = await snapshot(redis)
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": ADMIN_TOKEN}):
            response = await client.post(
                "/admin/kill-switches/global", json={"reason": "r"}, headers=headers
            )
            assert response.status_code == 401
            assert response.json()["error"] == "Unauthorized"
        assert await snapshot(redis) == before


class TestResults:
    async def test_results_of_the_demo_experiment(self, bridge: Client, redis: Redis) -> None:
        app, client = bridge
        users = [f"r{i}" for i in range(40)]
        for user in users:
            await assemble(client, user={"id": user}, sessionId="s1")
        await settle(app)
        arms = {u: 1 if (gb_hash("hero-headline-test", u, 2) or 0) >= 0.5 else 0 for u in users}
        converting = [u for u in users if (arms[u] == 1 and int(u[1:]) % 2) or int(u[1:]) % 5 == 0]
        for user in converting:
            await record_conversion(
                redis,
                runtime(app).keys,
                {"type": "track", "event": "Order Completed", "userId": user},
            )
        response = await client.get("/admin/experiments/hero-headline-test/results", headers=ADMIN)
        assert response.status_code == 200, response.text
        document = response.json()
        n = [sum(1 for u in users if arms[u] == a) for a in (0, 1)]
        c = [sum(1 for u in converting if arms[u] == a) for a in (0, 1)]
        control, treated = document["arms"]
        assert (control["variant"], treated["variant"]) == ("control", "cta-headline-b")
        assert [control["exposures"], treated["exposures"]] == n
        assert [control["conversions"], treated["conversions"]] == c
        assert treated["rate"] == pytest.approx(c[1] / n[1])
        uplift = relative_uplift(c[0], n[0], c[1], n[1])
        assert uplift is not None
        assert treated["uplift"]["relative"] == pytest.approx(uplift.relative)
        assert treated["uplift"]["ci95"] == [pytest.approx(uplift.low), pytest.approx(uplift.high)]
        assert treated["pValue"] == pytest.approx(two_sided_p(c[0], n[0], c[1], n[1]))
        assert treated["chanceToBeatControl"] == pytest.approx(
            chance_to_beat(c[0], n[0], c[1], n[1])
        )
        ratio = srm(n, [0.5, 0.5])
        assert ratio is not None
        assert document["srm"]["pValue"] == pytest.approx(ratio.p_value)
        assert document["srm"]["mismatch"] is (ratio.p_value < 0.001)
        assert document["goalEvent"] == "Order Completed"
        assert document["status"] == "running"

    async def test_a_broken_split_is_flagged(self, bridge: Client, redis: Redis) -> None:
        _, client = bridge
        name = "mbtest:decisions:test:hero-headline-test"
        await redis.hset(
            name, mapping={"arm:control:visitors": 5000, "arm:cta-headline-b:visitors": 5600}
        )
        document = (
            await client.get("/admin/experiments/hero-headline-test/results", headers=ADMIN)
        ).json()
        assert document["srm"]["mismatch"] is True
        assert document["srm"]["pValue"] < 0.001

    async def test_unknown_experiment_is_404(self, bridge: Client) -> None:
        _, client = bridge
        response = await client.get("/admin/experiments/nope/results", headers=ADMIN)
        assert response.status_code == 404
        assert response.json()["error"] == "ExperimentNotFound"


ROLLOUT = "banner-mobile"
MOBILE = {"attributes": {"device": "mobile"}}


class TestGuardrail:
    async def test_a_significantly_worse_rollout_is_switched_off_and_shown(
        self, redis: Redis, redis_server: RedisServer
    ) -> None:
        async with decision_app(
            redis_server.url,
            admin=True,
            guardrail_min_sample=25,
            guardrail_alpha=0.01,
            guardrail_interval_seconds=0.1,
        ) as (app, client):
            await publish(app, with_fields("var-banner-mobile", rollout=0.5))
            held_out = []
            for i in range(120):
                slots = await assemble(client, user={"id": f"m{i}"}, sessionId="s", context=MOBILE)
                banner = slots["home.banner"]
                if banner["variant"] == ROLLOUT:
                    assert banner["reason"] == "audience mobile-users (rollout 50%)"
                else:
                    held_out.append(f"m{i}")
            await settle(app)
            for user in held_out:  # only visitors who did not see the variant buy
                await record_conversion(
                    redis,
                    runtime(app).keys,
                    {"type": "track", "event": "Order Completed", "userId": user},
                )
            switches: list[dict[str, Any]] = []
            for _ in range(100):  # the guardrail loop runs every 0.1 s
                listed = (await client.get("/admin/kill-switches", headers=ADMIN)).json()
                switches = listed["switches"]
                if switches:
                    break
                await asyncio.sleep(0.05)
            assert [(s["scope"], s["key"], s["by"]) for s in switches] == [
                ("variant", ROLLOUT, "guardrail")
            ]
            assert "held out" in switches[0]["reason"]
            rollouts = (await client.get("/admin/rollouts", headers=ADMIN)).json()["rollouts"]
            (shown,) = rollouts
            assert (shown["variant"], shown["status"]) == (ROLLOUT, "tripped")
            assert shown["rolledOut"]["conversions"] == 0
            assert shown["heldOut"]["conversions"] == len(held_out)
            rolled_in = next(f"m{i}" for i in range(120) if f"m{i}" not in held_out)
            slots = await assemble(client, user={"id": rolled_in}, sessionId="s2", context=MOBILE)
            assert slots["home.banner"]["variant"] != ROLLOUT

    async def test_rollouts_are_listed_while_collecting(self, bridge: Client) -> None:
        app, client = bridge
        await publish(app, with_fields("var-banner-mobile", rollout=0.3))
        rollouts = (await client.get("/admin/rollouts", headers=ADMIN)).json()
        assert rollouts["guardrailEnabled"] is True
        assert [(r["variant"], r["share"], r["status"]) for r in rollouts["rollouts"]] == [
            (ROLLOUT, 0.3, "collecting")
        ]
