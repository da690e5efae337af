"""Model-scored variants: the artifact, its publication to every replica, model choice with a
threshold, the rollback to rules, and explain. Real Redis, real apps (two on one store)."""

from __future__ import annotations

import functools
import math
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from types import SimpleNamespace
from typing import Any

import httpx
import orjson
import pytest
from redis.asyncio import Redis

from assembly.decisions.visitor import build_visitor
from assembly.learning.artifact import decode, encode
from assembly.learning.compiled import CompiledModel, Ranked, VisitorScores
from assembly.learning.exceptions import ModelInvalid
from assembly.learning.store import ModelStore
from assembly.ports import Profile
from assembly.schemas import AssembleRequest
from core.redis import Keys
from tests.assembly.support import (
    ADMIN,
    Client,
    assemble,
    decision_app,
    logged,
    replayed,
    runtime,
)
from tests.support.app import by_slot
from tests.support.demo import publish, with_fields
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually

KEYS = Keys("mbtest")
CART = {"audiences": ["cart_abandoners"]}
VIDEO = {"audiences": ["video_lovers"]}
FEATURES = [
    {"path": "audiences:cart_abandoners", "kind": "audience"},
    {"path": "audiences:video_lovers", "kind": "audience"},
]


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def variant(base: float, cart: float, video: float) -> dict[str, Any]:
    """A variant converting `base` for everyone, `cart` for cart abandoners, `video` for video
    lovers (logistic weights that give exactly those chances)."""
    b = logit(base)
    return {
        "intercept": b,
        "weights": [logit(cart) - b, logit(video) - b],
        "exposures": 1000,
        "conversions": 100,
    }


def body(version: int, *, swapped: bool = False) -> dict[str, Any]:
    cart, video = ("hero-video", "hero-cart") if swapped else ("hero-cart", "hero-video")
    return {
        "version": version,
        "trainedAt": 1.0,
        "goal": "Order Completed",
        "attributionSeconds": 86400.0,
        "features": FEATURES,
        "slots": {
            "home.hero": {
                "auc": 0.7,
                "exposures": 3000,
                "variants": {
                    cart: variant(0.05, 0.24, 0.05),
                    video: variant(0.05, 0.05, 0.15),
                    "hero-returning": variant(0.08, 0.06, 0.06),
                },
            }
        },
    }


async def publish_model(redis: Redis, **kwargs: Any) -> int:
    store = ModelStore(redis, KEYS)
    version = await store.next_version()
    await store.publish(version, encode(body(version, **kwargs)), keep=5)
    return version


HERO_FOR_ALL = [
    with_fields("var-hero-cart", audiences=[], priority=0),
    with_fields("var-hero-video", audiences=[], priority=0),
    with_fields("var-hero-returning", audiences=[], priority=0),
]


def hero_slot(threshold: float | None, revision: int = 0) -> dict[str, Any]:
    """The hero slot asking for model choice at `threshold`; a later `revision` replaces it."""
    item = with_fields("slot-home-hero", modelThreshold=threshold)
    item["sys"]["revision"] += revision
    return item


@pytest.fixture
async def bridge(redis: Redis, redis_server: RedisServer) -> AsyncIterator[Client]:
    async with decision_app(redis_server.url, admin=True, model_poll_seconds=0.2) as running:
        await publish(running[0], *HERO_FOR_ALL, hero_slot(0.2))
        yield running


async def hero(client: httpx.AsyncClient, context: dict[str, Any]) -> dict[str, Any]:
    slots = await assemble(client, user={"id": "v1"}, context=context)
    return slots["home.hero"]


async def metric(client: httpx.AsyncClient, name: str) -> float:
    text = (await client.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


# ---------------------------------------------------------------- the artifact


def test_artifact_round_trips_and_refuses_tampering() -> None:
    raw = encode(body(1))
    doc = decode(raw)
    assert doc.version == 1
    assert [f.path for f in doc.features] == [f["path"] for f in FEATURES]
    tampered = orjson.loads(raw)
    tampered["slots"]["home.hero"]["variants"]["hero-cart"]["intercept"] = 5.0
    with pytest.raises(ModelInvalid, match="checksum"):
        decode(orjson.dumps(tampered))
    with pytest.raises(ModelInvalid, match="not JSON"):
        decode(raw[: len(raw) // 2])


def ranked_for(audiences: list[str], keys: list[str]) -> Ranked | None:
    model = CompiledModel(decode(encode(body(1))))
    request = AssembleRequest.model_validate({"template": "home", "user": {"id": "u1"}})
    visitor = build_visitor(request, Profile(audiences=frozenset(audiences)), 0.0)
    tied = [(SimpleNamespace(key=key), None) for key in keys]
    return VisitorScores(model, visitor).rank("home.hero", tied)  # type: ignore[arg-type]


def test_the_ranking_names_the_top_variant_its_runner_up_and_the_confidence() -> None:
    ranked = ranked_for(["cart_abandoners"], ["hero-video", "hero-cart", "hero-returning"])
    assert ranked is not None
    assert [round(p or 0, 6) for p in ranked.probs] == [0.05, 0.24, 0.06]
    assert (ranked.best, ranked.runner) == (1, 2)
    assert ranked.sure == pytest.approx((0.24 - 0.06) / 0.24)


def test_the_model_ranks_nothing_it_has_not_seen_and_ties_go_to_the_first() -> None:
    unseen = ranked_for(["cart_abandoners"], ["hero-cart", "hero-new"])
    assert unseen is not None
    assert unseen.probs[1] is None
    assert unseen.probs[0] == pytest.approx(0.24), "the variants it knows are still scored"
    assert (unseen.best, unseen.runner, unseen.sure) == (-1, -1, -1.0), "below every threshold"
    first = ranked_for(["cart_abandoners"], ["hero-new", "hero-cart"])
    assert first is not None
    assert first.probs[0] is None
    assert first.probs[1] == pytest.approx(0.24)
    tie = ranked_for([], ["hero-cart", "hero-video"])  # 0.05 each
    assert tie is not None
    assert (tie.best, tie.runner) == (0, 1)
    assert tie.sure == pytest.approx(0.0)
    assert ranked_for([], ["hero-cart"]) is not None
    assert ranked_for([], ["hero-cart"]).sure == -1.0, "one variant: no runner-up"  # type: ignore[union-attr]
    model = CompiledModel(decode(encode(body(1))))
    assert (
        VisitorScores(model, build_visitor(AssembleRequest(template="home"), None)).rank(
            "home.cta", []
        )
        is None
    ), "no model for the slot"


def test_artifact_schema_is_enforced() -> None:
    short = body(1)
    short["slots"]["home.hero"]["variants"]["hero-cart"]["weights"] = [1.0]
    with pytest.raises(ModelInvalid, match="1 weights, 2 features"):
        encode(short)
    unknown = {**body(1), "extra": True}
    with pytest.raises(ModelInvalid, match="schema"):
        encode(unknown)
    bad_kind = body(1)
    bad_kind["features"] = [{"path": "signals.x", "kind": "vector"}, FEATURES[1]]
    with pytest.raises(ModelInvalid, match="schema"):
        encode(bad_kind)


# ---------------------------------------------------------------- serving


async def test_without_a_model_the_rules_decide(bridge: Client) -> None:
    app, client = bridge
    answer = await hero(client, CART)
    assert "model" not in answer["reason"]
    assert runtime(app).models.model is None
    assert await metric(client, "microbridge_model_loaded") == 0
    ready = (await client.get("/readyz")).json()
    assert ready["model"] == {"version": None, "published": None, "problem": None}


async def test_the_model_picks_per_segment_and_every_replica_reloads_a_new_version(
    redis: Redis, redis_server: RedisServer, bridge: Client
) -> None:
    first, client = bridge
    async with AsyncExitStack() as stack:
        second, other = await stack.enter_async_context(
            decision_app(redis_server.url, model_poll_seconds=0.2)
        )
        version = await publish_model(redis)
        await serving(version, first, second)
        for c in (client, other):
            assert (await hero(c, CART))["variant"] == "hero-cart"
            assert "model" in (await hero(c, CART))["reason"]
            assert (await hero(c, VIDEO))["variant"] == "hero-video"
            assert (await hero(c, {}))["variant"] == "hero-returning"
        swapped = await publish_model(redis, swapped=True)
        await serving(swapped, first, second)
        for c in (client, other):
            assert (await hero(c, CART))["variant"] == "hero-video"
            assert (await hero(c, VIDEO))["variant"] == "hero-cart"
    assert await metric(client, "microbridge_model_version") == swapped


async def serving(version: int, *apps: Any) -> None:
    """Wait until every app serves `version` of the model."""
    for app in apps:
        await eventually(functools.partial(_version, app), lambda v: v == version)


async def _version(app: Any) -> int | None:
    model = runtime(app).models.model
    return model.version if model is not None else None


async def serving_model(redis: Redis, app: Any) -> int:
    """Publish the test model and wait until `app` serves it; its version."""
    version = await publish_model(redis)
    await eventually(lambda: _version(app), lambda v: v == version)
    return version


async def explained_hero(client: httpx.AsyncClient, context: dict[str, Any]) -> dict[str, Any]:
    """`/admin/explain` of the home page for visitor v1: the hero slot's explanation."""
    request = {"template": "home", "user": {"id": "v1"}, "context": context}
    response = await client.post("/admin/explain", json=request, headers=ADMIN)
    assert response.status_code == 200, response.text
    slot: dict[str, Any] = next(s for s in response.json()["slots"] if s["slot"] == "home.hero")
    return slot


async def test_below_the_threshold_the_rules_decide(redis: Redis, bridge: Client) -> None:
    app, client = bridge
    await serving_model(redis, app)
    # Cart abandoners: 0.24 against 0.06, confidence 0.75; everyone else: 0.08 against 0.05,
    # confidence 0.375. A threshold of 0.5 lets the model pick only for cart abandoners.
    await publish(app, hero_slot(0.5, revision=1))
    cart = await hero(client, CART)
    assert cart["variant"] == "hero-cart"
    assert "confidence 0.75 >= 0.5" in cart["reason"]
    others = await hero(client, {})
    assert "model" not in others["reason"]
    # Without a threshold the model only adds its term to the conflict score.
    await publish(app, hero_slot(None, revision=2))
    assert "model" not in (await hero(client, CART))["reason"]


def hero_variant(key: str, threshold: float | None, revision: int) -> dict[str, Any]:
    """A hero variant for everyone at priority 0, with its own `modelThreshold`."""
    item = with_fields(f"var-{key}", audiences=[], priority=0, modelThreshold=threshold)
    item["sys"]["revision"] += revision
    return item


async def test_a_variant_threshold_lets_the_model_pick_it_and_overrides_the_slots(
    redis: Redis, bridge: Client
) -> None:
    app, client = bridge
    await serving_model(redis, app)
    # No slot threshold; hero-cart asks for model choice at 0.5. Cart abandoners: hero-cart
    # ranked first, confidence 0.75; video lovers: hero-video first (0.15 against 0.06,
    # confidence 0.6), and hero-video asks nothing.
    await publish(app, hero_slot(None, revision=1), hero_variant("hero-cart", 0.5, 1))
    cart = await hero(client, CART)
    assert cart["variant"] == "hero-cart"
    assert "confidence 0.75 >= 0.5" in cart["reason"]
    assert "model" not in (await hero(client, VIDEO))["reason"]
    # The slot allows 0.2, but hero-video's own 0.9 is what its choice needs: the rules decide.
    await publish(app, hero_slot(0.2, revision=2), hero_variant("hero-video", 0.9, 1))
    assert "model" not in (await hero(client, VIDEO))["reason"]
    assert "confidence 0.75 >= 0.5" in (await hero(client, CART))["reason"]
    slot = await explained_hero(client, VIDEO)
    thresholds = {c["variant"]: c["model"]["threshold"] for c in slot["candidates"]}
    assert thresholds == {"hero-cart": 0.5, "hero-video": 0.9, "hero-returning": 0.2}
    choice = next(s for s in slot["steps"] if s["rule"] == "conflicts")["read"]["model"]
    assert (choice["top"], choice["threshold"], choice["chose"]) == ("hero-video", 0.9, False)


async def test_a_broken_or_missing_artifact_rolls_back_to_the_rules(
    redis: Redis, bridge: Client
) -> None:
    app, client = bridge
    version = await serving_model(redis, app)
    failures = await metric(client, "microbridge_model_load_failures_total")
    store = ModelStore(redis, KEYS)
    broken = await store.next_version()
    raw = orjson.loads(encode(body(broken)))
    raw["slots"]["home.hero"]["variants"]["hero-cart"]["weights"] = [9.0, 9.0]  # checksum now wrong
    await store.publish(broken, orjson.dumps(raw), keep=5)
    holder = runtime(app).models
    await eventually(lambda: _version(app), lambda v: v is None)
    assert holder.problem is not None
    assert "checksum mismatch" in holder.problem
    assert "model" not in (await hero(client, CART))["reason"]
    assert await metric(client, "microbridge_model_loaded") == 0
    assert await metric(client, "microbridge_model_load_failures_total") == failures + 1
    ready = (await client.get("/readyz")).json()
    assert ready["status"] == "ready"  # the rules decide: the replica still serves
    assert ready["model"] == {"version": None, "published": broken, "problem": holder.problem}
    # A version whose artifact is gone: still the rules.
    await redis.set(store.keys.model_current, 999)
    await store.redis.publish(store.keys.model_channel, "999")
    await eventually(lambda: _published(app), lambda v: v == 999)
    assert holder.model is None
    assert "artifact is gone" in (holder.problem or "")
    # The operator points back at the good version: the model is back.
    await store.point_to(version)
    await eventually(lambda: _version(app), lambda v: v == version)
    assert (await hero(client, CART))["variant"] == "hero-cart"


async def _published(app: Any) -> int | None:
    published: int | None = runtime(app).models.published
    return published


async def test_explain_shows_each_candidates_model_score_and_the_threshold(
    redis: Redis, bridge: Client
) -> None:
    app, client = bridge
    version = await serving_model(redis, app)
    slot = await explained_hero(client, CART)
    models = {c["variant"]: c["model"] for c in slot["candidates"]}
    assert models["hero-cart"] == {
        "version": version,
        "score": pytest.approx(0.24),
        "threshold": 0.2,
    }
    assert models["hero-video"]["score"] == pytest.approx(0.05)
    assert models["hero-returning"]["score"] == pytest.approx(0.06)
    conflict = next(s for s in slot["steps"] if s["rule"] == "conflicts")
    choice = conflict["read"]["model"]
    assert choice["top"] == "hero-cart"
    assert choice["runnerUp"] == "hero-returning"
    assert choice["confidence"] == pytest.approx(0.75)
    assert choice["chose"] is True
    assert conflict["read"]["scores"]["hero-cart"]["model"] == pytest.approx(0.24)
    assert slot["variant"] == "hero-cart" == (await hero(client, CART))["variant"]


async def test_replay_decides_with_the_model_version_that_decided(
    redis: Redis, bridge: Client
) -> None:
    app, client = bridge
    first = await serving_model(redis, app)
    body = {"template": "home", "user": {"id": "v1"}, "context": CART}
    answer = (await client.post("/v1/assemble", json=body)).json()
    assert by_slot(answer)["home.hero"]["variant"] == "hero-cart"
    swapped = await publish_model(redis, swapped=True)  # now cart abandoners get hero-video
    await serving(swapped, app)
    assert (await hero(client, CART))["variant"] == "hero-video"
    await logged(app)

    result = await replayed(client, answer["decisionId"])
    assert result["same"], result["slots"]
    (row,) = [r for r in result["slots"] if r["slot"] == "home.hero"]
    assert "model" in row["recorded"]["reason"]
    assert row["replayed"]["reason"] == row["recorded"]["reason"]
    assert result["learning"]["model"] == {"recorded": first, "replayedWith": first}
    assert result["learning"]["notes"] == []

    await redis.delete(KEYS.model_artifact(first))  # that version is no longer kept
    gone = await replayed(client, answer["decisionId"])
    assert gone["learning"]["model"] == {"recorded": first, "replayedWith": None}
    (row,) = [r for r in gone["slots"] if r["slot"] == "home.hero"]
    assert "model" not in row["replayed"]["reason"], "the rules decided alone"
    assert gone["learning"]["notes"] == [
        f"ranking model version {first} is no longer kept: replayed without a model"
    ]
