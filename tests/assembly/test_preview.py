"""Draft preview: drafts only with `preview` and a secret, nothing written, forcing, the cache.

The published library comes from the real `contentful` SDK syncing a loopback CDA fake; the
drafts from the same SDK on a loopback Preview API fake; the store is the test Redis.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from redis.asyncio import Redis

from app import AppSettings
from assembly.preview.config import PreviewSettings
from assembly.preview.drafts import DraftCache
from assembly.preview.exceptions import DraftsUnavailable
from core.settings import ServiceSettings
from integration.config import ContentfulSettings
from integration.preview_source import PreviewSource
from tests.fakes.contentful import FakeContentful
from tests.fakes.contentful_preview import FakeContentfulPreview
from tests.support.app import make_settings, running_app
from tests.support.demo import demo_items
from tests.support.redis_server import RedisServer

KEY = "editor-preview-key"
ADMIN = "preview-admin-token"
DRAFT_HEADLINE = "Draft: run further, all year"
HOME = {"template": "home", "user": {"anonymousId": "a-preview"}, "sessionId": "s-preview"}


def draft_items() -> list[dict[str, Any]]:
    """The demo space with one edit nobody published: the hero baseline's headline."""
    items = copy.deepcopy(list(demo_items().values()))
    hero = next(i for i in items if i["sys"]["id"] == "hero-default")
    hero["fields"]["headline"] = {"en-US": DRAFT_HEADLINE}
    return items


@pytest.fixture
def cda() -> Any:
    with FakeContentful(pages=[list(demo_items().values())]) as fake:
        yield fake


@pytest.fixture
def cpa(cda: FakeContentful) -> Any:
    with FakeContentfulPreview(draft_items(), space_id=cda.space_id) as fake:
        yield fake


def settings_for(
    redis_server: RedisServer,
    cda: FakeContentful | None,
    cpa: FakeContentfulPreview | None,
    *,
    key: str | None = KEY,
    admin: str | None = ADMIN,
) -> AppSettings:
    contentful: dict[str, Any] = {}
    if cda is not None:
        contentful = {
            "space_id": cda.space_id,
            "access_token": SecretStr(cda.token),
            "cda_url": cda.url,
            "sync_interval_seconds": 0,
            "timeout_seconds": 2.0,
            "max_attempts": 2,
        }
    if cpa is not None:
        contentful |= {"preview_token": SecretStr(cpa.token), "preview_url": cpa.url}
    base = make_settings(redis_server.url, "mbpreview", **contentful)
    service = ServiceSettings(
        log_level="warning",
        library_poll_seconds=0.2,
        snapshot_path=base.service.snapshot_path,
        admin_token=SecretStr(admin) if admin else None,
    )
    preview = PreviewSettings(key=SecretStr(key) if key else None, cache_seconds=60)
    return replace(base, service=service, preview=preview)


@pytest.fixture
async def bridge(
    redis: Redis, redis_server: RedisServer, cda: FakeContentful, cpa: FakeContentfulPreview
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with running_app(settings_for(redis_server, cda, cpa)) as running:
        yield running


async def preview(client: httpx.AsyncClient, **extra: Any) -> httpx.Response:
    body = {**HOME, "preview": True, **extra}
    return await client.post("/v1/assemble", json=body, headers={"X-Preview-Key": KEY})


def slot(answer: dict[str, Any], key: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in answer["slots"] if s["slot"] == key)
    return found


async def store_dump(redis: Redis) -> dict[bytes, bytes | None]:
    """Every key of the store and its serialized value."""
    keys = sorted([k async for k in redis.scan_iter(count=1000)])
    return {k: await redis.dump(k) for k in keys}


class TestSecret:
    async def test_without_a_key_preview_answers_401(
        self, bridge: tuple[FastAPI, httpx.AsyncClient]
    ) -> None:
        _, client = bridge
        response = await client.post("/v1/assemble", json={**HOME, "preview": True})
        assert response.status_code == 401
        assert response.json()["error"] == "PreviewUnauthorized"
        page = await client.get("/preview/home")
        assert page.status_code == 401
        assert page.json()["error"] == "PreviewUnauthorized"

    async def test_a_wrong_key_answers_401(self, bridge: tuple[FastAPI, httpx.AsyncClient]) -> None:
        _, client = bridge
        response = await client.post(
            "/v1/assemble", json={**HOME, "preview": True}, headers={"X-Preview-Key": "nope"}
        )
        assert response.status_code == 401
        assert (await client.get("/preview/home", params={"key": "nope"})).status_code == 401

    async def test_the_key_in_header_query_or_the_admin_token_opens_preview(
        self, bridge: tuple[FastAPI, httpx.AsyncClient]
    ) -> None:
        _, client = bridge
        assert (await preview(client)).status_code == 200
        page = await client.get("/preview/home", params={"key": KEY})
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        admin = await client.post(
            "/v1/assemble",
            json={**HOME, "preview": True},
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        assert admin.status_code == 200

    async def test_without_any_secret_configured_preview_is_disabled(
        self, redis: Redis, redis_server: RedisServer
    ) -> None:
        settings = settings_for(redis_server, None, None, key=None, admin=None)
        async with running_app(settings) as (_, client):
            response = await client.post(
                "/v1/assemble", json={**HOME, "preview": True}, headers={"X-Preview-Key": "x"}
            )
        assert response.status_code == 403
        assert response.json()["error"] == "PreviewDisabled"


class TestDrafts:
    async def test_drafts_only_in_preview_answers(
        self, bridge: tuple[FastAPI, httpx.AsyncClient]
    ) -> None:
        app, client = bridge
        drafted = (await preview(client)).json()
        assert drafted["preview"]["content"] == "drafts"
        assert slot(drafted, "home.hero")["entry"]["fields"]["headline"] == DRAFT_HEADLINE
        published = (await client.post("/v1/assemble", json=HOME)).json()
        headline = slot(published, "home.hero")["entry"]["fields"]["headline"]
        assert headline == "Run further in every season"
        assert "preview" not in published
        library = app.state.services.integration.holder.library
        assert library.resolver.entry("hero-default", "en-US")["fields"]["headline"] == headline

    async def test_drafts_never_reach_the_store(
        self, bridge: tuple[FastAPI, httpx.AsyncClient], redis: Redis
    ) -> None:
        _, client = bridge
        before = await store_dump(redis)
        for options in (
            {},
            {"audiences": ["cart-abandoners"]},
            {"arms": {"hero-headline-test": "control"}},
        ):
            assert (await preview(client, previewOptions=options)).status_code == 200
        await asyncio.sleep(0.1)  # give a (wrongly) queued write its batch window
        after = await store_dump(redis)
        assert after == before
        assert all(DRAFT_HEADLINE.encode() not in (value or b"") for value in after.values())

    async def test_published_content_on_request(
        self, bridge: tuple[FastAPI, httpx.AsyncClient]
    ) -> None:
        _, client = bridge
        answer = (await preview(client, previewOptions={"content": "published"})).json()
        assert answer["preview"]["content"] == "published"
        headline = slot(answer, "home.hero")["entry"]["fields"]["headline"]
        assert headline == "Run further in every season"

    async def test_a_failing_preview_api_answers_503(
        self, bridge: tuple[FastAPI, httpx.AsyncClient], cpa: FakeContentfulPreview
    ) -> None:
        _, client = bridge
        cpa.fail_next(401, count=1)
        response = await preview(client)
        assert response.status_code == 503
        assert response.json()["error"] == "DraftsUnavailable"
        assert "AccessTokenInvalid" in response.json()["detail"]
        assert (await client.post("/v1/assemble", json=HOME)).status_code == 200

    async def test_without_a_preview_token_the_published_library_stands_in(
        self, redis: Redis, redis_server: RedisServer
    ) -> None:
        async with running_app(settings_for(redis_server, None, None)) as (_, client):
            answer = (await preview(client)).json()
        assert answer["preview"]["content"] == "published"
        assert "CONTENTFUL_PREVIEW_TOKEN" in answer["preview"]["detail"]
        assert len(answer["slots"]) == 6


class TestForcing:
    async def test_forced_audience(self, bridge: tuple[FastAPI, httpx.AsyncClient]) -> None:
        _, client = bridge
        plain = (await preview(client)).json()
        assert slot(plain, "home.hero")["variant"] is None
        cart = (await preview(client, previewOptions={"audiences": ["cart-abandoners"]})).json()
        hero = slot(cart, "home.hero")
        assert (hero["variant"], hero["reason"]) == ("hero-cart", "audience cart-abandoners")
        video = (await preview(client, previewOptions={"audiences": ["video-lovers"]})).json()
        assert slot(video, "home.hero")["variant"] == "hero-video"

    async def test_forced_variant(self, bridge: tuple[FastAPI, httpx.AsyncClient]) -> None:
        _, client = bridge
        options = {"variants": {"home.hero": "hero-returning", "home.tip": "baseline"}}
        answer = (await preview(client, previewOptions=options)).json()
        hero = slot(answer, "home.hero")
        assert hero["variant"] == "hero-returning"
        assert hero["reason"] == "preview: variant hero-returning forced"
        assert hero["entry"]["id"] == "hero-returning"
        assert slot(answer, "home.tip")["source"] == "baseline"

    async def test_forced_experiment_arm(self, bridge: tuple[FastAPI, httpx.AsyncClient]) -> None:
        _, client = bridge
        for label, arm, entry in (
            ("cta-headline-b", 1, "cta-headline-b"),
            ("control", 0, "cta-default"),
        ):
            options = {"arms": {"hero-headline-test": label}}
            cta = slot((await preview(client, previewOptions=options)).json(), "home.cta")
            assert cta["source"] == "experiment"
            assert cta["experiment"] == {"key": "hero-headline-test", "arm": arm, "variant": label}
            assert cta["entry"]["id"] == entry

    @pytest.mark.parametrize(
        "options",
        [
            {"audiences": ["no-such-audience"]},
            {"variants": {"home.hero": "no-such-variant"}},
            {"variants": {"no.slot": "baseline"}},
            {"arms": {"no-such-test": "control"}},
            {"arms": {"hero-headline-test": "no-such-arm"}},
        ],
    )
    async def test_unknown_keys_answer_404(
        self, bridge: tuple[FastAPI, httpx.AsyncClient], options: dict[str, Any]
    ) -> None:
        _, client = bridge
        response = await preview(client, previewOptions=options)
        assert response.status_code == 404
        assert response.json()["error"] == "PreviewTargetNotFound"

    async def test_options_without_preview_are_ignored(
        self, bridge: tuple[FastAPI, httpx.AsyncClient]
    ) -> None:
        _, client = bridge
        body = {**HOME, "previewOptions": {"variants": {"home.hero": "hero-video"}}}
        answer = (await client.post("/v1/assemble", json=body)).json()
        assert slot(answer, "home.hero")["variant"] is None


class TestEntryLinks:
    async def test_one_template_redirects_with_the_variant_forced(
        self, bridge: tuple[FastAPI, httpx.AsyncClient]
    ) -> None:
        _, client = bridge
        response = await client.get("/preview/entry/hero-video", params={"key": KEY})
        assert response.status_code == 307
        location = httpx.URL(response.headers["location"])
        assert location.path == "/preview/home"
        assert location.params["key"] == KEY
        assert location.params["variant"] == "home.hero:hero-video"
        page = await client.get(str(location))
        assert page.status_code == 200
        assert "preview: variant hero-video forced" in page.text

    async def test_an_unused_entry_answers_404(
        self, bridge: tuple[FastAPI, httpx.AsyncClient]
    ) -> None:
        _, client = bridge
        response = await client.get("/preview/entry/asset-hero-video", params={"key": KEY})
        assert response.status_code == 404
        assert response.json()["error"] == "EntryNotUsed"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def entries_requests(fake: FakeContentfulPreview) -> int:
    return sum(1 for path, _ in fake.requests if path.endswith("/entries"))


class TestCache:
    @pytest.fixture
    def source(self, cpa: FakeContentfulPreview, cda: FakeContentful) -> PreviewSource:
        settings = settings_for_source(cpa)
        return PreviewSource(settings)

    async def test_drafts_are_reused_until_they_expire(
        self, source: PreviewSource, cpa: FakeContentfulPreview
    ) -> None:
        clock = Clock()
        cache = DraftCache(source, ttl=5, link_depth=2, clock=clock)
        first = await cache.get()
        assert (await cache.get()) is first
        assert entries_requests(cpa) == 1
        edited = copy.deepcopy(demo_items()["hero-default"])
        edited["fields"]["headline"] = {"en-US": "Second draft"}
        cpa.save(edited)
        clock.now += 4.9
        assert (await cache.get()) is first
        clock.now += 0.2
        fresh = await cache.get()
        assert entries_requests(cpa) == 2
        assert fresh.library.resolver is not None
        hero = fresh.library.resolver.entry("hero-default", "en-US")
        assert hero is not None
        assert hero["fields"]["headline"] == "Second draft"

    async def test_concurrent_requests_share_one_fetch(
        self, source: PreviewSource, cpa: FakeContentfulPreview
    ) -> None:
        cache = DraftCache(source, ttl=0, link_depth=2)
        results = await asyncio.gather(*(cache.get() for _ in range(5)))
        assert entries_requests(cpa) == 1
        assert all(r is results[0] for r in results)

    async def test_a_failed_fetch_is_not_cached(
        self, source: PreviewSource, cpa: FakeContentfulPreview
    ) -> None:
        cache = DraftCache(source, ttl=60, link_depth=2)
        cpa.fail_next(403)
        with pytest.raises(DraftsUnavailable):
            await cache.get()
        assert (await cache.get()).library.templates.keys() == {"home"}

    def test_paging_reads_every_entry_and_the_linked_assets(
        self, cpa: FakeContentfulPreview
    ) -> None:
        content = PreviewSource(settings_for_source(cpa), page_size=7).fetch()
        entries = [k for k in content.entities if k.startswith("Entry:")]
        assert len(entries) == sum(1 for i in draft_items() if i["sys"]["type"] == "Entry")
        assert "Asset:asset-hero-video" in content.entities
        skips = [q["skip"] for p, q in cpa.requests if p.endswith("/entries")]
        assert skips == [str(n) for n in range(0, len(entries), 7)]
        assert {q["locale"] for p, q in cpa.requests if p.endswith("/entries")} == {"*"}


def settings_for_source(cpa: FakeContentfulPreview) -> ContentfulSettings:
    return ContentfulSettings(
        _env_file=None,
        space_id=cpa.space_id,
        access_token=SecretStr("delivery"),
        preview_token=SecretStr(cpa.token),
        preview_url=cpa.url,
        timeout_seconds=2.0,
        max_attempts=1,
    )
