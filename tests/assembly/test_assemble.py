"""`POST /v1/assemble` end to end: the demo space through the real pipeline and a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from segment_sync.profiles.store import RedisProfileStore
from tests.support.app import assemble, by_slot, make_settings, running_app
from tests.support.demo import publish, with_fields
from tests.support.redis_server import RedisServer

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
Client = tuple[FastAPI, httpx.AsyncClient]


@pytest.fixture
async def bridge(redis: Redis, redis_server: RedisServer) -> AsyncIterator[Client]:
    async with running_app(make_settings(redis_server.url)) as (app, client):
        app.state.services.assembly.service.clock = lambda: NOW
        yield app, client


async def test_two_visitors_get_different_content(bridge: Client) -> None:
    _, client = bridge
    a = by_slot(
        await assemble(
            client, user={"anonymousId": "visitor-a"}, context={"audiences": ["cart_abandoners"]}
        )
    )
    b = by_slot(
        await assemble(
            client,
            user={"anonymousId": "visitor-b"},
            context={"audiences": ["video_lovers"], "attributes": {"device": "mobile"}},
        )
    )
    assert a["home.hero"]["variant"] == "hero-cart"
    assert a["home.hero"]["reason"] == "audience cart-abandoners"
    assert b["home.hero"]["variant"] == "hero-video"
    assert b["home.banner"]["variant"] == "banner-mobile"
    assert a["home.hero"]["entry"]["fields"] != b["home.hero"]["entry"]["fields"]


async def test_answer_has_every_slot_with_source_and_reason(bridge: Client) -> None:
    _, client = bridge
    answer = await assemble(client)
    assert answer["template"] == "home"
    assert answer["locale"] == "en-US"
    assert answer["degraded"] is False
    assert answer["contentVersion"] >= 1
    assert [s["slot"] for s in answer["slots"]] == [
        "home.hero",
        "home.cta",
        "home.banner",
        "home.testimonial",
        "home.tip",
        "home.recommendation",
    ]
    for slot in answer["slots"]:
        assert slot["source"] in {"variant", "experiment", "baseline"}
        assert slot["reason"]
        assert slot["entry"]["id"]
        assert slot["entry"]["contentType"]


async def test_linked_asset_is_resolved_in_fields(bridge: Client) -> None:
    _, client = bridge
    hero = by_slot(await assemble(client))["home.hero"]
    image = hero["entry"]["fields"]["image"]
    assert image["type"] == "Asset"
    assert image["fields"]["file"]["url"].startswith("//")


async def test_profile_audiences_from_redis_are_used(bridge: Client, redis: Redis) -> None:
    app, client = bridge
    profiles = RedisProfileStore(redis, app.state.services.integration.keys)
    await profiles.write(user_id="u-42", audiences={"cart_abandoners"})
    hero = by_slot(await assemble(client, user={"id": "u-42"}))["home.hero"]
    assert hero["variant"] == "hero-cart"


async def test_behavioural_signals_drive_conditions(bridge: Client, redis: Redis) -> None:
    app, client = bridge
    profiles = RedisProfileStore(redis, app.state.services.integration.keys)
    await profiles.write(anonymous_id="a-dwell", signals={"dwell": {"sku-1001": 45}, "visits": 3})
    slots = by_slot(await assemble(client, user={"anonymousId": "a-dwell"}))
    assert slots["home.recommendation"]["variant"] == "reco-accessories"
    assert slots["home.hero"]["variant"] == "hero-returning"
    assert slots["home.tip"]["variant"] == "tip-returning"


async def test_no_consent_serves_baselines_only(bridge: Client) -> None:
    _, client = bridge
    answer = await assemble(client, context={"audiences": ["cart_abandoners"], "consent": False})
    for slot in answer["slots"]:
        assert slot["source"] == "baseline"
        assert slot["reason"] == "no consent for personalization"


async def test_slots_request_answers_only_those_slots(bridge: Client) -> None:
    _, client = bridge
    answer = await assemble(client, template=None, slots=["home.tip", "home.hero"])
    assert answer["template"] is None
    assert [s["slot"] for s in answer["slots"]] == ["home.tip", "home.hero"]


async def test_locale_with_fallback_chain(bridge: Client) -> None:
    _, client = bridge
    en = by_slot(await assemble(client))["home.hero"]["entry"]["fields"]
    de = by_slot(await assemble(client, locale="de-DE"))["home.hero"]["entry"]["fields"]
    assert de["headline"] != en["headline"]
    untranslated = [k for k in en if k in de and de[k] == en[k]]
    assert untranslated, "fields without de-DE fall back to en-US"


async def test_disabled_variant_is_never_served(bridge: Client) -> None:
    _, client = bridge
    slot = by_slot(await assemble(client))["home.testimonial"]
    assert slot["variant"] != "testimonial-marathon"
    assert slot["source"] == "baseline"


async def test_scheduled_variants_follow_the_clock(bridge: Client) -> None:
    app, client = bridge
    assert by_slot(await assemble(client))["home.banner"]["variant"] == "banner-winter-sale"
    app.state.services.assembly.service.clock = lambda: datetime(2026, 10, 15, tzinfo=UTC)
    assert by_slot(await assemble(client))["home.banner"]["variant"] == "banner-autumn-trail"


@pytest.mark.parametrize(
    ("entry_id", "fields", "reason"),
    [
        ("slot-home-hero", {"killSwitch": True}, "kill switch: slot home.hero"),
        ("tpl-home", {"killSwitch": True}, "kill switch: template home"),
        ("settings", {"killSwitch": True}, "kill switch: global"),
    ],
)
async def test_kill_switches_serve_the_baseline(
    bridge: Client, entry_id: str, fields: dict[str, Any], reason: str
) -> None:
    app, client = bridge
    await publish(app, with_fields(entry_id, **fields))
    hero = by_slot(await assemble(client, context={"audiences": ["cart_abandoners"]}))["home.hero"]
    assert hero["source"] == "baseline"
    assert hero["reason"] == reason


async def test_priority_then_recency_resolves_conflicts(bridge: Client) -> None:
    app, client = bridge
    visitor = {"context": {"audiences": ["cart_abandoners", "video_lovers"]}}
    assert by_slot(await assemble(client, **visitor))["home.hero"]["variant"] == "hero-cart"
    await publish(app, with_fields("var-hero-video", priority=20))
    # Same priority now: the most recently published (hero-video, just now) wins.
    assert by_slot(await assemble(client, **visitor))["home.hero"]["variant"] == "hero-video"


async def test_style_tokens_of_the_variant_are_merged(bridge: Client) -> None:
    _, client = bridge
    hero = by_slot(await assemble(client, context={"audiences": ["cart_abandoners"]}))["home.hero"]
    assert hero["style"], "the hero-cart variant carries style tokens"


async def test_max_personalized_caps_the_page(bridge: Client) -> None:
    app, client = bridge
    await publish(app, with_fields("tpl-home", maxPersonalized=1))
    answer = await assemble(client, context={"audiences": ["cart_abandoners"]})
    personalized = [s for s in answer["slots"] if s["source"] != "baseline"]
    assert len(personalized) == 1
    assert any(s["reason"] == "maxPersonalized 1 reached" for s in answer["slots"])


async def test_experiment_arm_is_bucketed_stably(bridge: Client) -> None:
    _, client = bridge
    seen = set()
    for _ in range(3):
        cta = by_slot(await assemble(client, user={"id": "u1"}))["home.cta"]
        seen.add((cta["source"], cta["variant"], cta["experiment"]["arm"]))
    assert seen == {("experiment", "cta-headline-b", 1)}
    control = by_slot(await assemble(client, user={"id": "u3"}))["home.cta"]
    assert control["experiment"] == {"key": "hero-headline-test", "arm": 0, "variant": "control"}
    assert control["variant"] is None
