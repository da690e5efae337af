"""Experiments across requests on the real app and Redis: sticky arms, exposures, conversions.

The demo's `hero-headline-test` runs on `home.cta`: control (the baseline) 0.5, `cta-headline-b`
0.5. A visitor without audiences reaches it (the targeted CTA variants don't match).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from assembly.admin import service as admin
from assembly.store import record_conversion
from assembly.targeting.bucketing import gb_hash
from tests.assembly.arms import WEIGHTS, arm_item, experiment_item, growthbook, slot_item
from tests.assembly.faults import pause, private_redis, resume
from tests.assembly.support import Client, assemble, decision_app, runtime, settle
from tests.support.demo import publish, with_fields
from tests.support.redis_server import RedisServer

EXPERIMENT = "hero-headline-test"
ARM_B = "cta-headline-b"
STATS = f"mbtest:decisions:test:{EXPERIMENT}"
ORDER = {"type": "track", "event": "Order Completed"}


def visitors_with_bucket(low: float, high: float, count: int) -> list[str]:
    """Visitor ids whose hash-v2 bucket for the experiment lies in [low, high)."""
    found = []
    for i in range(10_000):
        bucket = gb_hash(EXPERIMENT, f"v{i}", 2)
        if bucket is not None and low <= bucket < high:
            found.append(f"v{i}")
            if len(found) == count:
                return found
    raise AssertionError("not enough visitors in that bucket range")


@pytest.fixture
async def bridge(redis: Redis, redis_server: RedisServer) -> AsyncIterator[Client]:
    async with decision_app(redis_server.url) as running:
        yield running


async def cta(client: Any, user: str, session: str = "s1", **body: Any) -> dict[str, Any]:
    return (await assemble(client, user={"id": user}, sessionId=session, **body))["home.cta"]


async def exposure_events(redis: Redis) -> list[dict[str, Any]]:
    """The "Experiment Viewed" messages handed to the event pipeline's stream."""
    entries: Any = (
        await redis.xrange("mbtest:events") if await redis.exists("mbtest:events") else []
    )
    return [
        orjson.loads(fields[b"m"]) for _, fields in entries if fields.get(b"src") == b"decisions"
    ]


async def counts(redis: Redis) -> dict[str, int]:
    row: Any = await redis.hgetall(STATS)
    return {k.decode(): int(v) for k, v in row.items() if k != b"meta"}


async def test_weight_and_coverage_changes_do_not_move_assigned_visitors(
    bridge: Client, redis: Redis
) -> None:
    app, client = bridge
    assigned, fresh = visitors_with_bucket(0.5, 0.9, 2)  # arm 1 at 50/50, control at 90/10
    first = await cta(client, assigned)
    assert (first["variant"], first["experiment"]["arm"]) == ("cta-headline-b", 1)
    await settle(app)
    await publish(
        app,
        with_fields("exp-hero-headline-test", controlWeight=0.9, coverage=0.5),
        with_fields("var-cta-headline-b", weight=0.1),
    )
    again = await cta(client, assigned, session="s2")
    assert (again["variant"], again["experiment"]["arm"]) == ("cta-headline-b", 1)
    assert again["reason"] == f"experiment {EXPERIMENT} arm {ARM_B} (sticky)"
    newcomer = await cta(client, fresh)
    assert newcomer["source"] == "baseline"
    assert newcomer["reason"] == f"experiment {EXPERIMENT}: outside coverage"


async def test_sticky_assignment_holds_before_the_write_lands(
    redis: Redis, redis_server: RedisServer
) -> None:
    # The writer waits a second before flushing: the next request must already see the arm.
    async with decision_app(redis_server.url, writer_flush_seconds=1.0) as (app, client):
        (visitor,) = visitors_with_bucket(0.5, 0.9, 1)
        assert (await cta(client, visitor))["experiment"]["arm"] == 1
        await publish(
            app,
            with_fields("exp-hero-headline-test", controlWeight=0.9),
            with_fields("var-cta-headline-b", weight=0.1),
        )
        assert not await redis.exists(f"mbtest:{{v:u:{visitor}}}:decisions"), "not written yet"
        again = await cta(client, visitor, session="s2")
        assert (again["experiment"]["arm"], again["reason"]) == (
            1,
            f"experiment {EXPERIMENT} arm {ARM_B} (sticky)",
        )
        await settle(app)
    stored = await redis.hget(f"mbtest:{{v:u:{visitor}}}:decisions", f"a:{EXPERIMENT}")
    assert stored is not None
    assert orjson.loads(stored)["arm"] == 1


async def test_stopped_experiment_serves_its_winner_or_the_baseline(bridge: Client) -> None:
    app, client = bridge
    await publish(app, with_fields("exp-hero-headline-test", status="stopped", winner=1))
    for user in ("a", "b", "c"):
        answer = await cta(client, user)
        assert (answer["source"], answer["variant"]) == ("variant", "cta-headline-b")
        assert answer["reason"] == f"experiment {EXPERIMENT} stopped: winner {ARM_B} (arm 1)"
    later = with_fields("exp-hero-headline-test", status="stopped")
    later["sys"]["revision"] += 1  # a newer revision than the one published above
    await publish(app, later)
    answer = await cta(client, "a")
    assert (answer["source"], answer["reason"]) == (
        "baseline",
        f"experiment {EXPERIMENT} is stopped",
    )


async def test_exposures_are_recorded_once_per_visitor_and_session(
    bridge: Client, redis: Redis
) -> None:
    app, client = bridge
    (visitor,) = visitors_with_bucket(0.5, 1.0, 1)
    for _ in range(3):
        await cta(client, visitor, session="s1")
    await settle(app)
    assert await counts(redis) == {f"arm:{ARM_B}:visitors": 1, f"arm:{ARM_B}:sessions": 1}
    await cta(client, visitor, session="s2")
    await settle(app)
    assert await counts(redis) == {f"arm:{ARM_B}:visitors": 1, f"arm:{ARM_B}:sessions": 2}
    events = await exposure_events(redis)
    assert len(events) == 2
    assert {e["properties"]["session_id"] for e in events} == {"s1", "s2"}
    event = events[0]
    assert (event["type"], event["event"], event["userId"]) == (
        "track",
        "Experiment Viewed",
        visitor,
    )
    assert event["properties"]["experiment_key"] == EXPERIMENT
    assert (event["properties"]["variant"], event["properties"]["arm"]) == ("cta-headline-b", 1)
    assert event["messageId"].startswith("mb-exp-")
    meta: Any = orjson.loads(await redis.hget(STATS, "meta") or b"null")
    assert meta == {
        "kind": "experiment",
        "arms": ["control", "cta-headline-b"],
        "weights": [0.5, 0.5],
        "goal": "Order Completed",
    }


async def test_outside_coverage_and_without_consent_nothing_is_recorded(
    bridge: Client, redis: Redis
) -> None:
    app, client = bridge
    await cta(client, "no-consent", context={"consent": False})
    await publish(app, with_fields("exp-hero-headline-test", coverage=0.0))
    assert (await cta(client, "outside"))["reason"] == f"experiment {EXPERIMENT}: outside coverage"
    await settle(app)
    assert not await redis.exists(STATS)
    assert not await redis.exists("mbtest:{v:u:no-consent}:decisions")
    assert await exposure_events(redis) == []


async def test_conversions_are_attributed_to_the_arm_once_per_visitor(
    bridge: Client, redis: Redis
) -> None:
    app, client = bridge
    treated = visitors_with_bucket(0.5, 1.0, 2)
    control = visitors_with_bucket(0.0, 0.5, 1)
    for user in [*treated, *control]:
        await cta(client, user)
    await settle(app)
    keys = runtime(app).keys
    for user in [treated[0], treated[0], control[0]]:  # a repeated order counts once
        await record_conversion(redis, keys, {**ORDER, "userId": user})
    await record_conversion(
        redis, keys, {"type": "track", "event": "Product Viewed", "userId": treated[1]}
    )
    assert await counts(redis) == {
        f"arm:{ARM_B}:visitors": 2,
        f"arm:{ARM_B}:sessions": 2,
        "arm:control:visitors": 1,
        "arm:control:sessions": 1,
        f"arm:{ARM_B}:conversions": 1,
        "arm:control:conversions": 1,
    }


async def test_conversion_of_a_visitor_without_assignment_writes_nothing(
    bridge: Client, redis: Redis
) -> None:
    app, _ = bridge
    before = sorted(await redis.keys("*"))
    await record_conversion(redis, runtime(app).keys, {**ORDER, "anonymousId": "stranger"})
    await record_conversion(redis, runtime(app).keys, {**ORDER})  # no id at all
    assert sorted(await redis.keys("*")) == before


async def test_assignment_made_anonymously_carries_over_to_the_known_user(
    bridge: Client, redis: Redis
) -> None:
    app, client = bridge
    anonymous = await assemble(client, user={"anonymousId": "anon-7"}, sessionId="s1")
    arm = anonymous["home.cta"]["experiment"]["variant"]
    await settle(app)
    known = await assemble(client, user={"id": "user-7", "anonymousId": "anon-7"}, sessionId="s2")
    assert known["home.cta"]["experiment"]["variant"] == arm
    assert "sticky" in known["home.cta"]["reason"]
    await settle(app)
    await record_conversion(
        redis, runtime(app).keys, {**ORDER, "userId": "user-7", "anonymousId": "anon-7"}
    )
    assert (await counts(redis))[f"arm:{arm}:conversions"] == 1


# ------------------------------------------------- arms republished and reordered under traffic

ARMS = ("cta-b", "cta-c", "cta-d")
REORDERED = ("cta-d", "cta-c", "cta-b")
EQUAL = dict.fromkeys(("control", *ARMS), 0.25)


async def traffic(client: Any, users: list[str], session: str) -> dict[str, str | None]:
    """Each visitor's arm label on one page view (None: the experiment did not apply)."""
    served = {}
    for user in users:
        answer = await cta(client, user, session=session)
        served[user] = answer["experiment"]["variant"] if answer["experiment"] else None
    return served


def growthbook_arms(order: tuple[str, ...], weights: dict[str, float], users: list[str]) -> Any:
    labels = ["control", *order]
    return {u: growthbook(labels, [weights[k] for k in labels], u, 1.0) for u in users}


async def convert(app: Any, redis: Redis, users: list[str]) -> None:
    for user in users:
        await record_conversion(redis, runtime(app).keys, {**ORDER, "userId": user})


async def test_results_per_variant_key_stay_exact_through_a_republish_and_a_reorder(
    bridge: Client, redis: Redis
) -> None:
    app, client = bridge
    await publish(
        app,
        experiment_item(coverage=1.0, controlWeight=WEIGHTS["control"]),
        slot_item(*ARMS),
        *(arm_item(k, WEIGHTS[k]) for k in ARMS),
    )
    first = [f"a{i}" for i in range(60)]
    before = await traffic(client, first, "s1")
    assert before == growthbook_arms(ARMS, WEIGHTS, first)
    await settle(app)
    await convert(app, redis, first[::3])
    # Republish every arm with equal weights and list them in the opposite order.
    await publish(
        app,
        experiment_item(coverage=1.0, controlWeight=0.25, revision=4),
        slot_item(*REORDERED, revision=4),
        *(arm_item(k, 0.25, revision=2) for k in ARMS),
    )
    assert await traffic(client, first, "s2") == before, "assigned visitors keep their arm"
    second = [f"b{i}" for i in range(60)]
    after = await traffic(client, second, "s1")
    assert after == growthbook_arms(REORDERED, EQUAL, second)
    await settle(app)
    await convert(app, redis, [*first[::3], *first[1::3], *second[::4]])  # repeats count once
    converted = {*first[::3], *first[1::3], *second[::4]}
    document = await admin.results(runtime(app), EXPERIMENT)
    rows = {row["variant"]: row for row in document["arms"]}
    assert [row["variant"] for row in document["arms"]] == ["control", *REORDERED]
    assert [row["arm"] for row in document["arms"]] == [0, 1, 2, 3]
    for label, row in rows.items():
        old = [u for u in first if before[u] == label]
        new = [u for u in second if after[u] == label]
        assert row["exposures"] == len(old) + len(new), label
        assert row["sessions"] == 2 * len(old) + len(new), label
        assert row["conversions"] == len([u for u in old + new if u in converted]), label
        assert row["weight"] == 0.25
    stored: Any = await redis.hkeys(f"mbtest:decisions:test:{EXPERIMENT}")
    assert all(f == b"meta" or f.startswith(b"arm:") for f in stored), "no positional counters"


async def test_weights_outside_the_tolerance_are_reported_in_readyz(bridge: Client) -> None:
    app, client = bridge
    weights = {**WEIGHTS, "control": 0.4}  # 1.3: GrowthBook splits equally
    await publish(
        app,
        experiment_item(coverage=1.0, controlWeight=0.4),
        slot_item(*ARMS),
        *(arm_item(k, WEIGHTS[k]) for k in ARMS),
    )
    ready = (await client.get("/readyz")).json()
    problems = [
        i["problem"] for i in ready["library"]["issues"] if i["contentType"] == "mbExperiment"
    ]
    assert problems == [
        f"experiment {EXPERIMENT}: weights sum to 1.3 (controlWeight 0.4 + cta-b 0.2 + cta-c 0.3 "
        "+ cta-d 0.4), not 1 (0.99 to 1.01); an equal split (1/4 each) is used in slot home.cta"
    ]
    users = [f"w{i}" for i in range(40)]
    assert await traffic(client, users, "s1") == growthbook_arms(ARMS, weights, users)
    await settle(app)
    document = await admin.results(runtime(app), EXPERIMENT)
    assert [row["weight"] for row in document["arms"]] == [0.25] * 4


async def test_shutdown_finishes_the_write_in_flight_and_hands_over_its_exposure() -> None:
    """SIGTERM while the visitor's write waits on a slow store: shutdown lets that write end
    and then records its exposure (before, the cancel cut it between the two, leaving the
    counts written and the exposure lost)."""
    with private_redis() as server:
        async with decision_app(server.url, writer_flush_seconds=0.2) as (app, client):
            (visitor,) = visitors_with_bucket(0.5, 1.0, 1)
            assert (await cta(client, visitor))["variant"] == ARM_B
            pause(server)  # the batch leaves after 0.2 s, into a store that hangs
            await asyncio.sleep(0.3)
            assert runtime(app).writer.queued == 0, "the write is in flight"
            asyncio.get_running_loop().call_later(0.1, resume, server)  # during shutdown
        stored = Redis.from_url(server.url)
        try:
            assert await counts(stored) == {
                f"arm:{ARM_B}:visitors": 1,
                f"arm:{ARM_B}:sessions": 1,
            }
            assert [e["userId"] for e in await exposure_events(stored)] == [visitor]
        finally:
            await stored.aclose()
