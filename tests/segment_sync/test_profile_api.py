"""The Profile API client against the loopback fake: shapes, auth, pagination, retries."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from segment_sync.profile_api.client import (
    ProfileApiClient,
    ProfileApiRejected,
    ProfileApiUnavailable,
    build_http_client,
    retry_after_seconds,
)
from segment_sync.webhook_config import SegmentWebhookSettings
from tests.fakes.segment_profiles import FakeProfileApi
from tests.support.redis_server import free_port

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "segment"
DOC_TRAITS: dict[str, Any] = json.loads(
    (REFERENCE / "profile-api-traits-200.json").read_text("utf-8")
)["traits"]
# In the docs' example, these booleans are Engage audiences; the rest are custom traits.
DOC_AUDIENCES = {
    "3_product_views_in_last_60_days": False,
    "all_users_order_completed": True,
    "big_spender": False,
}


def settings_for(url: str, **overrides: Any) -> SegmentWebhookSettings:
    values: dict[str, Any] = {
        "profile_space_id": "spa_test",
        "profile_token": "pat-test",
        "profile_url": url,
        "profile_max_attempts": 3,
        "profile_backoff_seconds": 0.0,
        "profile_timeout_seconds": 2.0,
        **overrides,
    }
    return SegmentWebhookSettings(_env_file=None, **values)


class Sleeps:
    """Records what the client asked to wait, without waiting."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


@pytest.fixture
def fake() -> Iterator[FakeProfileApi]:
    with FakeProfileApi() as api:
        custom = {k: v for k, v in DOC_TRAITS.items() if k not in DOC_AUDIENCES}
        api.put_profile("1413639574", traits=custom, audiences=DOC_AUDIENCES)
        yield api


@pytest.fixture
async def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def client(fake: FakeProfileApi, sleeps: Sleeps) -> AsyncIterator[ProfileApiClient]:
    settings = settings_for(fake.url)
    async with build_http_client(settings) as http:
        yield ProfileApiClient(http, settings, sleep=sleeps)


async def test_fetch_splits_audiences_from_traits(client: ProfileApiClient) -> None:
    pulled = await client.fetch("1413639574")
    assert pulled is not None
    assert pulled.audiences == frozenset({"all_users_order_completed"})
    assert dict(pulled.traits) == {
        "Campaign Name": "Organic",
        "Campaign Source": "Organic",
        "Experiment Group": "Group A",
        "Invited User?": "Invited User?",
        "Referrering Domain": "http://duckduckgo.com",
    }


async def test_requests_use_basic_auth_and_the_documented_path(
    client: ProfileApiClient, fake: FakeProfileApi
) -> None:
    await client.fetch("1413639574")
    seen = fake.requests
    assert [s.authorized for s in seen] == [True, True]
    assert {s.path for s in seen} == {
        "/v1/spaces/spa_test/collections/users/profiles/user_id:1413639574/traits"
    }
    assert seen[0].query == {"limit": "200"}
    assert seen[1].query == {"limit": "200", "class": "audience"}


async def test_user_ids_are_escaped(client: ProfileApiClient, fake: FakeProfileApi) -> None:
    fake.put_profile("a+b/c d", audiences={"vip": True})
    pulled = await client.fetch("a+b/c d")
    assert pulled is not None
    assert pulled.audiences == frozenset({"vip"})
    assert fake.requests[0].external_id == "user_id:a+b/c d"
    assert "%2B" in fake.requests[0].path


async def test_pages_are_followed(fake: FakeProfileApi, sleeps: Sleeps) -> None:
    fake.page_size = 3
    traits = {f"t{i:02}": i for i in range(8)}
    fake.put_profile("paged", traits=traits, audiences={"a": True, "b": False, "c": True})
    settings = settings_for(fake.url)
    async with build_http_client(settings) as http:
        pulled = await ProfileApiClient(http, settings, sleep=sleeps).fetch("paged")
    assert pulled is not None
    assert dict(pulled.traits) == traits
    assert pulled.audiences == frozenset({"a", "c"})
    assert len(fake.requests) == 4 + 1  # 11 traits in pages of 3, then 3 flags in one page
    assert "next" in fake.requests[1].query


async def test_unknown_profile_is_none(client: ProfileApiClient, fake: FakeProfileApi) -> None:
    assert await client.fetch("nobody") is None
    assert len(fake.requests) == 1


async def test_429_waits_what_retry_after_asks(
    client: ProfileApiClient, fake: FakeProfileApi, sleeps: Sleeps
) -> None:
    fake.fail_next(429, headers={"Retry-After": "2"})
    pulled = await client.fetch("1413639574")
    assert pulled is not None
    assert sleeps.seconds == [2.0]
    assert len(fake.requests) == 3


async def test_retry_after_over_the_cap_ends_the_pull(fake: FakeProfileApi, sleeps: Sleeps) -> None:
    settings = settings_for(fake.url, profile_max_wait_seconds=5)
    fake.fail_next(429, headers={"Retry-After": "60"})
    async with build_http_client(settings) as http:
        with pytest.raises(ProfileApiUnavailable, match="429 rate_limit_error"):
            await ProfileApiClient(http, settings, sleep=sleeps).fetch("1413639574")
    assert sleeps.seconds == []
    assert len(fake.requests) == 1


async def test_5xx_is_retried_then_succeeds(
    client: ProfileApiClient, fake: FakeProfileApi, sleeps: Sleeps
) -> None:
    fake.fail_next(503)
    fake.fail_next(500)
    assert await client.fetch("1413639574") is not None
    assert len(sleeps.seconds) == 2
    assert len(fake.requests) == 4


async def test_5xx_exhausts_the_attempts(
    client: ProfileApiClient, fake: FakeProfileApi, sleeps: Sleeps
) -> None:
    fake.fail_next(502, count=10)
    with pytest.raises(ProfileApiUnavailable, match="502"):
        await client.fetch("1413639574")
    assert len(fake.requests) == 3
    assert len(sleeps.seconds) == 2


async def test_bad_token_fails_at_once(fake: FakeProfileApi, sleeps: Sleeps) -> None:
    settings = settings_for(fake.url, profile_token="wrong")
    async with build_http_client(settings) as http:
        with pytest.raises(ProfileApiRejected, match="401 authentication_error"):
            await ProfileApiClient(http, settings, sleep=sleeps).fetch("1413639574")
    assert [s.authorized for s in fake.requests] == [False]
    assert sleeps.seconds == []


async def test_refused_connection_is_retried_then_raised(sleeps: Sleeps) -> None:
    settings = settings_for(f"http://127.0.0.1:{free_port()}")
    async with build_http_client(settings) as http:
        with pytest.raises(ProfileApiUnavailable, match="ConnectError"):
            await ProfileApiClient(http, settings, sleep=sleeps).fetch("u1")
    assert len(sleeps.seconds) == 2


class TestRetryAfter:
    def test_seconds(self) -> None:
        assert retry_after_seconds("7") == 7.0

    def test_http_date(self) -> None:
        when = datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC)
        now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp()
        assert retry_after_seconds(format_datetime(when, usegmt=True), now=now) == 30.0

    def test_past_date_is_zero(self) -> None:
        assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0

    @pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5"])
    def test_unusable(self, value: str | None) -> None:
        assert retry_after_seconds(value) is None
