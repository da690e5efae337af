"""`POST /admin/explain` and `cli.py explain`: every rule of every slot, the winner assemble
serves, and nothing written.

The demo space, made busier: `hero-video` ties `hero-cart` at priority 20 (conflict scores),
`tip-new` rolls out to half, `tip-returning` is capped at 2 views a session, the page caps
personalized slots at 4 and is sequenced by engagement, an admin switch kills `reco-discount`
and another the testimonial slot; `cta-headline-b` is an arm of `hero-headline-test`.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from segment_sync.profiles.store import RedisProfileStore
from tests.assembly.support import ADMIN, NOW, Client, decision_app, runtime, settle
from tests.assembly.test_results_cli import run_cli
from tests.support.demo import publish, with_fields
from tests.support.redis_server import RedisServer

SEGMENTS = ("cart_abandoners", "video_lovers")


@pytest.fixture
async def bridge(redis: Redis, redis_server: RedisServer) -> AsyncIterator[Client]:
    async with decision_app(redis_server.url, admin=True) as running:
        app, client = running
        await publish(
            app,
            with_fields("var-hero-video", priority=20),
            with_fields("var-tip-new", rollout=0.5),
            with_fields("var-tip-returning", frequencyCap={"max": 2, "per": "session"}),
            with_fields("tpl-home", sequencing="engagement", maxPersonalized=4),
        )
        for path in ("variant/reco-discount", "slot/home.testimonial"):
            response = await client.post(
                f"/admin/kill-switches/{path}", json={"reason": "test"}, headers=ADMIN
            )
            assert response.status_code == 200, response.text
        yield running


async def explain(client: Any, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/admin/explain", json=body, headers=ADMIN)
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def served(answer: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(s["slot"], s["source"], s["variant"], s["reason"], s["experiment"]) for s in answer]


def random_visitor(rng: random.Random, n: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """A profile to store and the request context of one visitor."""
    signals: dict[str, Any] = {"visits": rng.randint(0, 4)}
    if rng.random() < 0.3:
        signals["cartAbandoned"] = True
    if rng.random() < 0.4:
        signals["dwell"] = {"sku-1001": rng.choice([10, 31, 45])}
    if rng.random() < 0.5:
        signals["engagement"] = {c: rng.randint(0, 9) for c in ("running", "promo", "shoes")}
        signals["at"] = {"cartAbandoned": NOW.timestamp() - rng.randint(0, 7200)}
    profile = {
        "audiences": {s for s in SEGMENTS if rng.random() < 0.4},
        "traits": {"personas": ["runner"]} if rng.random() < 0.3 else {},
        "signals": signals,
    }
    context: dict[str, Any] = {
        "attributes": {
            "device": rng.choice(["mobile", "desktop"]),
            "language": rng.choice(["de-AT", "en-GB", "fr"]),
        },
        "page": {"search": rng.choice(["", "?utm_campaign=summer-run"])},
        "audiences": [s for s in SEGMENTS if rng.random() < 0.2],
    }
    consent = rng.choice([True, True, True, None, False])
    if consent is not None:
        context["consent"] = consent
    return profile, context


async def test_the_explained_winner_is_what_assemble_serves_for_many_visitors(
    bridge: Client, redis: Redis
) -> None:
    app, client = bridge
    profiles = RedisProfileStore(redis, runtime(app).keys)
    rng = random.Random(20261125)
    decided_by: set[str] = set()
    for n in range(40):
        profile, context = random_visitor(rng, n)
        user = {"id": f"u{n}"} if n % 3 else {"anonymousId": f"a{n}"}
        await profiles.write(
            user_id=user.get("id"), anonymous_id=user.get("anonymousId"), **profile
        )
        for view in range(4):
            body = {"template": "home", "user": user, "sessionId": f"s{n}-{view // 2}"}
            # the second view of a session joins both segments: coherence keeps the first choice
            body["context"] = {**context, "audiences": list(SEGMENTS)} if view % 2 else context
            explained = await explain(client, body)
            response = await client.post("/v1/assemble", json=body)
            assert response.status_code == 200, response.text
            assert served(explained["slots"]) == served(response.json()["slots"]), (n, view)
            await settle(app)
            for slot in explained["slots"]:
                decided_by.add(slot["decidedBy"])
                check_rules(slot)
    assert decided_by >= {
        "kill switch",
        "consent",
        "eligible variant",
        "conflict resolution",
        "experiment",
        "baseline",
        "maxPersonalized",
        "session coherence",
    }, decided_by


def check_rules(slot: dict[str, Any]) -> None:
    """The rules shown give the engine's verdicts (the twins agree with the hot path)."""
    for candidate in slot["candidates"]:
        if candidate["considered"]:
            outcomes = {r["outcome"] for r in candidate["rules"]}
            assert candidate["eligible"] == (outcomes == {"pass"}), (slot["slot"], candidate)
    steps = {s["rule"]: s for s in slot["steps"]}
    reason = slot["reason"]
    if "score" in reason and "conflicts" in steps and slot["decidedBy"] == "conflict resolution":
        scores = steps["conflicts"]["read"]["scores"]
        assert f"score {scores[slot['variant']]['score']:.2f} >" in reason
    experiment = steps.get("experiment")
    fresh_arm = "(sticky)" not in reason and reason.count(" arm ") == 1
    if experiment and slot["decidedBy"] == "experiment" and fresh_arm:
        assert reason.endswith(f"arm {experiment['read']['arm']}"), reason


async def test_a_slot_explained_rule_by_rule(bridge: Client, redis: Redis) -> None:
    app, client = bridge
    profiles = RedisProfileStore(redis, runtime(app).keys)
    await profiles.write(user_id="ex1", signals={"dwell": {"sku-1001": 45}, "visits": 3})
    body = {
        "template": "home",
        "user": {"id": "ex1"},
        "sessionId": "s1",
        "context": {"attributes": {"device": "desktop", "language": "de-DE"}},
    }
    document = await explain(client, body)
    slots = {s["slot"]: s for s in document["slots"]}
    banner = {c["variant"]: c for c in slots["home.banner"]["candidates"]}
    mobile = {r["rule"]: r for r in banner["banner-mobile"]["rules"]}
    assert mobile["audiences"]["outcome"] == "fail"
    [audience] = mobile["audiences"]["read"]["audiences"]
    [part] = audience["condition"]["parts"]
    assert (part["path"], part["value"], part["passed"]) == ("attributes.device", "desktop", False)
    dach = {r["rule"]: r for r in banner["banner-dach"]["rules"]}
    assert dach["audiences"]["detail"] == "audience german-speakers matched"
    autumn = {r["rule"]: r for r in banner["banner-autumn-trail"]["rules"]}
    assert autumn["schedule"]["outcome"] == "fail"
    assert autumn["schedule"]["detail"].startswith("ended at 2026-10-31")
    winter = {r["rule"]: r for r in banner["banner-winter-sale"]["rules"]}
    assert winter["frequency cap"]["read"]["count"] == 0
    assert winter["frequency cap"]["detail"] == "0 of 5 per day"
    reco = {c["variant"]: c for c in slots["home.recommendation"]["candidates"]}
    dwell = {r["rule"]: r for r in reco["reco-accessories"]["rules"]}["conditions"]
    assert dwell["read"]["parts"][0]["value"] == 45
    assert {r["rule"]: r for r in reco["reco-discount"]["rules"]}["kill switch"]["outcome"] == (
        "fail"
    )
    cta = slots["home.cta"]
    experiment = {s["rule"]: s for s in cta["steps"]}["experiment"]["read"]
    assert experiment["namespace"]["inside"] is True
    assert experiment["hashValue"] == "ex1"
    assert experiment["ranges"] == [[0.0, 0.5], [0.5, 1.0]]
    assert 0 <= experiment["bucket"] < 1
    tip = {c["variant"]: c for c in slots["home.tip"]["candidates"]}
    rollout = {r["rule"]: r for r in tip["tip-new"]["rules"]}["rollout"]
    assert rollout["read"]["share"] == 0.5
    assert slots["home.testimonial"]["decidedBy"] == "kill switch"
    assert [s["position"] for s in document["slots"]] == list(range(6))
    assert document["visitor"]["consent"] == {"value": True, "from": "default"}


async def snapshot(redis: Redis) -> dict[str, Any]:
    """Everything the store holds but the content and sync bookkeeping."""
    found: dict[str, Any] = {}
    for raw in sorted(await redis.keys("*")):
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        if key.startswith("mbtest:content:"):
            continue
        named = await redis.type(key)
        kind = named.decode() if isinstance(named, bytes) else str(named)
        if kind == "hash":
            found[key] = await redis.hgetall(key)
        elif kind == "string":
            found[key] = await redis.get(key)
        elif kind == "set":
            found[key] = await redis.smembers(key)
        elif kind == "stream":
            found[key] = await redis.xrange(key)
        else:
            found[key] = kind
    return found


async def test_explain_writes_nothing(bridge: Client, redis: Redis) -> None:
    app, client = bridge
    body: dict[str, Any] = {"template": "home", "user": {"id": "w1"}, "sessionId": "s1"}
    await client.post("/v1/assemble", json=body)  # an earlier page view: state to read
    await settle(app)
    before = await snapshot(redis)
    assert "mbtest:{v:u:w1}:decisions" in before, "the earlier page view left state to read"
    fresh = [
        body,
        {"template": "home", "user": {"id": "w2"}, "sessionId": "s9"},  # a new arm, counts
        {"template": "home", "user": {"anonymousId": "w3"}, "context": {"audiences": SEGMENTS}},
    ]
    for request in fresh:
        await explain(client, request)
    writer = runtime(app).writer
    assert (writer.queued, len(writer.pending)) == (0, 0), "nothing handed to the writer"
    await settle(app)
    assert await snapshot(redis) == before


@pytest.mark.parametrize(
    "headers", [{}, {"authorization": "Bearer wrong"}, {"authorization": "Basic x"}]
)
async def test_explain_needs_the_admin_token(bridge: Client, headers: dict[str, str]) -> None:
    _, client = bridge
    response = await client.post("/admin/explain", json={"template": "home"}, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "Unauthorized"


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"template": "nope"}, 404, "TemplateNotFound"),
        ({"slots": ["home.hero"], "locale": "xx-XX"}, 422, "UnknownLocale"),
        ({"template": "home", "slots": ["home.hero"]}, 422, "InvalidRequest"),
        ({"template": "home", "preview": True}, 422, "PreviewUnavailable"),
    ],
)
async def test_explain_refuses_what_assemble_refuses(
    bridge: Client, body: dict[str, Any], status: int, error: str
) -> None:
    _, client = bridge
    response = await client.post("/admin/explain", json=body, headers=ADMIN)
    assert (response.status_code, response.json()["error"]) == (status, error)


async def test_the_cli_prints_the_same_explanation(
    bridge: Client, redis: Redis, redis_server: RedisServer
) -> None:
    app, client = bridge
    body = {"template": "home", "user": {"id": "cli1"}, "context": {"audiences": SEGMENTS}}
    await client.post("/v1/assemble", json=body)
    await settle(app)
    served_now = await explain(client, body)
    args = ["explain", "--template", "home", "--user", "cli1", "--at", NOW.isoformat()]
    args += ["--context", '{"audiences": ["cart_abandoners", "video_lovers"]}']
    done = run_cli(*args, "--json", redis_url=redis_server.url)
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout) == served_now, "the CLI and the route agree"
    table = run_cli(*args, redis_url=redis_server.url)
    assert table.returncode == 0, table.stderr
    assert "home.hero: hero-" in table.stdout
    assert "decided by conflict resolution" in table.stdout
    assert " of 5 per day" in table.stdout
    assert "maxPersonalized" in table.stdout
