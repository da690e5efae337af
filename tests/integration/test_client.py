"""`ContentfulSource`: the real `contentful` SDK against a loopback fake of the CDA."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import contentful
import pytest
import requests
from contentful.errors import get_error
from pydantic import SecretStr
from structlog.testing import capture_logs
from tenacity import wait_none

from integration.client import ContentfulSource, is_transient
from integration.config import ContentfulSettings
from integration.exceptions import (
    ContentfulError,
    ContentfulRequestRejected,
    ContentfulUnavailable,
)
from integration.schemas import Locale, SyncPage
from tests.fakes.contentful import FakeContentful, build_entry

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "contentful"
CFEXAMPLEAPI = REFERENCE / "cda-sync-initial-cfexampleapi.json"
RESET_HEADER = "X-Contentful-RateLimit-Reset"


def reference_items(name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads((REFERENCE / name).read_text())["items"]
    return items


def settings_for(fake: FakeContentful, **overrides: Any) -> ContentfulSettings:
    values: dict[str, Any] = {
        "space_id": fake.space_id,
        "access_token": SecretStr(fake.token),
        "environment": fake.environment,
        "cda_url": fake.url,
        "timeout_seconds": 2.0,
        "max_attempts": 3,
        "max_wait_seconds": 5.0,
    }
    return ContentfulSettings(**(values | overrides))


def sync_requests(fake: FakeContentful) -> list[dict[str, str]]:
    return [query for path, query in fake.requests if path.endswith("/sync")]


def sync_all(source: ContentfulSource, token: str | None) -> tuple[list[SyncPage], str]:
    """Follow next pages to the end; the pages and the next sync token."""
    pages = [source.fetch_sync_page(token)]
    while pages[-1].next_page_token:
        pages.append(source.fetch_sync_page(pages[-1].next_page_token))
    token = pages[-1].next_sync_token
    assert token is not None
    return pages, token


@pytest.fixture
def fake() -> Iterator[FakeContentful]:
    with FakeContentful.from_sync_file(CFEXAMPLEAPI) as server:
        yield server


@pytest.fixture
def source(fake: FakeContentful) -> ContentfulSource:
    """No waiting between retries: tests about wait times build their own source."""
    return ContentfulSource(settings_for(fake), wait=wait_none())


class TestSync:
    def test_initial_sync_returns_the_recorded_items(
        self, fake: FakeContentful, source: ContentfulSource
    ) -> None:
        page = source.fetch_sync_page(None)

        assert page.items == reference_items("cda-sync-initial-cfexampleapi.json")
        assert len(page.items) == 14
        assert page.next_page_token is None
        assert page.next_sync_token
        assert fake.requests == [
            ("/spaces/cfexampleapi/environments/master/sync", {"initial": "true"})
        ]

    def test_token_travels_in_the_header_never_the_query(
        self, fake: FakeContentful, source: ContentfulSource
    ) -> None:
        source.fetch_sync_page(None)
        source.fetch_locales()

        assert len(fake.requests) == 2
        assert all("access_token" not in query for _, query in fake.requests)

    def test_pages_follow_next_page_url(self) -> None:
        with FakeContentful.from_sync_file(CFEXAMPLEAPI, page_size=5) as fake:
            source = ContentfulSource(settings_for(fake), wait=wait_none())
            pages, _ = sync_all(source, None)

        assert [len(p.items) for p in pages] == [5, 5, 4]
        assert all(p.next_page_token and not p.next_sync_token for p in pages[:-1])
        assert [i["sys"]["id"] for p in pages for i in p.items] == [
            i["sys"]["id"] for i in reference_items("cda-sync-initial-cfexampleapi.json")
        ]
        assert [q.keys() for q in sync_requests(fake)[1:]] == [{"sync_token"}, {"sync_token"}]

    def test_initial_sync_keeps_configured_page_boundaries(self) -> None:
        items = reference_items("cda-sync-initial-cfexampleapi.json")
        with FakeContentful(pages=[items[:3], items[3:]]) as fake:
            source = ContentfulSource(settings_for(fake), wait=wait_none())
            pages, _ = sync_all(source, None)

        assert [len(p.items) for p in pages] == [3, 11]

    def test_delta_carries_published_and_deleted_items(
        self, fake: FakeContentful, source: ContentfulSource
    ) -> None:
        _, token = sync_all(source, None)
        london = copy.deepcopy(reference_items("cda-sync-initial-cfexampleapi.json")[0])
        london["fields"]["name"]["en-US"] = "London, UK"
        fake.publish(
            london, build_entry("newCity", "1t9IbcfdCk6m04uISSsaIK", {"name": {"en-US": "Oslo"}})
        )
        fake.delete("nyancat", kind="Entry")
        fake.delete("jake", kind="Asset")

        delta = source.fetch_sync_page(token)

        by_id = {i["sys"]["id"]: i for i in delta.items}
        assert list(by_id) == ["5ETMRzkl9KM4omyMwKAOki", "newCity", "nyancat", "jake"]
        assert by_id["5ETMRzkl9KM4omyMwKAOki"]["fields"]["name"]["en-US"] == "London, UK"
        assert by_id["5ETMRzkl9KM4omyMwKAOki"]["sys"]["revision"] == london["sys"]["revision"] + 1
        assert by_id["nyancat"]["sys"]["type"] == "DeletedEntry"
        assert by_id["jake"]["sys"]["type"] == "DeletedAsset"
        recorded = reference_items("cda-sync-page-deleted-items.json")[0]
        assert by_id["nyancat"].keys() == recorded.keys()
        assert by_id["nyancat"]["sys"].keys() == recorded["sys"].keys()
        assert delta.next_sync_token
        assert delta.next_page_token is None

    def test_delta_without_changes_is_empty_and_keeps_the_token(
        self, source: ContentfulSource
    ) -> None:
        _, token = sync_all(source, None)

        delta = source.fetch_sync_page(token)

        assert delta.items == []
        assert delta.next_sync_token == token

    def test_next_url_without_environment_segment(self) -> None:
        with FakeContentful.from_sync_file(CFEXAMPLEAPI, environment_in_next_urls=False) as fake:
            source = ContentfulSource(settings_for(fake), wait=wait_none())
            _, token = sync_all(source, None)
            fake.delete("garfield")
            delta = source.fetch_sync_page(token)

        assert [i["sys"]["type"] for i in delta.items] == ["DeletedEntry"]

    def test_garbage_token_is_rejected_without_retry(
        self, fake: FakeContentful, source: ContentfulSource
    ) -> None:
        with pytest.raises(ContentfulRequestRejected) as caught:
            source.fetch_sync_page("not-a-token")

        assert caught.value.upstream_status == 400
        assert caught.value.error_id == "BadRequest"
        assert "HTTP 400 BadRequest" in caught.value.detail
        assert len(fake.requests) == 1


def test_locales_keep_default_and_fallback(source: ContentfulSource) -> None:
    assert source.fetch_locales() == [
        Locale("en-US", "English (United States)", default=True, fallback_code=None),
        Locale("de-DE", "German (Germany)", default=False, fallback_code="en-US"),
    ]


class TestRetries:
    def test_rate_limit_waits_the_reset_header(self, fake: FakeContentful) -> None:
        source = ContentfulSource(settings_for(fake))
        fake.fail_next(429, headers={RESET_HEADER: "1"})

        with capture_logs() as logs:
            started = time.monotonic()
            page = source.fetch_sync_page(None)
            elapsed = time.monotonic() - started

        assert len(page.items) == 14
        assert 1.0 <= elapsed < 2.0  # waited once, the SDK did not sleep the reset time too
        assert len(sync_requests(fake)) == 2
        retry = [e for e in logs if e["event"] == "contentful.request.retry"]
        assert retry == [
            {
                "event": "contentful.request.retry",
                "log_level": "warning",
                "operation": "sync",
                "attempt": 1,
                "wait": 1.0,
                "status": 429,
                "error": "RateLimitExceededError",
            }
        ]
        assert fake.token not in repr(logs)

    def test_rate_limit_wait_is_capped(self, fake: FakeContentful) -> None:
        source = ContentfulSource(settings_for(fake, max_wait_seconds=0.1))
        fake.fail_next(429, headers={RESET_HEADER: "3600"})

        started = time.monotonic()
        source.fetch_sync_page(None)

        assert time.monotonic() - started < 2.0
        assert len(sync_requests(fake)) == 2

    def test_rate_limit_without_reset_header_backs_off(self, fake: FakeContentful) -> None:
        source = ContentfulSource(settings_for(fake))
        fake.fail_next(429)

        with capture_logs() as logs:
            page = source.fetch_sync_page(None)

        assert len(page.items) == 14
        [retry] = [e for e in logs if e["event"] == "contentful.request.retry"]
        assert retry["status"] == 429
        assert 0 < retry["wait"] <= 10

    def test_server_error_then_success(
        self, fake: FakeContentful, source: ContentfulSource
    ) -> None:
        fake.fail_next(500)

        assert len(source.fetch_sync_page(None).items) == 14
        assert len(sync_requests(fake)) == 2

    def test_unavailable_until_attempts_run_out(
        self, fake: FakeContentful, source: ContentfulSource
    ) -> None:
        fake.fail_next(503, count=10)

        with pytest.raises(ContentfulUnavailable) as caught:
            source.fetch_sync_page(None)

        assert caught.value.status_code == 503
        assert caught.value.upstream_status == 503
        assert "after 3 attempt(s): HTTP 503" in caught.value.detail
        assert len(fake.requests) == 3

    def test_slow_answer_times_out_and_is_retried(self, fake: FakeContentful) -> None:
        source = ContentfulSource(settings_for(fake, timeout_seconds=0.3), wait=wait_none())
        fake.delay_next(3.0)

        started = time.monotonic()
        page = source.fetch_sync_page(None)

        assert len(page.items) == 14
        assert time.monotonic() - started < 2.0
        assert len(sync_requests(fake)) == 2

    def test_refused_connection_ends_unavailable(self) -> None:
        with FakeContentful() as fake:
            settings = settings_for(fake)
        source = ContentfulSource(settings, wait=wait_none())

        with pytest.raises(ContentfulUnavailable, match="after 3 attempt"):
            source.fetch_locales()


class TestRejections:
    def test_wrong_token_fails_fast_with_contentful_message(self, fake: FakeContentful) -> None:
        source = ContentfulSource(settings_for(fake, access_token=SecretStr("wrong-token")))

        with pytest.raises(ContentfulRequestRejected) as caught:
            source.fetch_sync_page(None)

        error = caught.value
        assert error.upstream_status == 401
        assert error.error_id == "AccessTokenInvalid"
        assert "HTTP 401 AccessTokenInvalid" in error.detail
        assert "The access token you sent could not be found or is invalid." in error.detail
        assert "wrong-token" not in error.detail
        assert len(fake.requests) == 1

    def test_unknown_space_is_not_found(self, fake: FakeContentful) -> None:
        source = ContentfulSource(settings_for(fake, space_id="nospace"))

        with pytest.raises(ContentfulRequestRejected, match="HTTP 404 NotFound") as caught:
            source.fetch_locales()

        assert caught.value.status_code == 502
        assert len(fake.requests) == 1

    @pytest.mark.parametrize(
        "body",
        [{"sys": {"type": "Array"}, "items": []}, "not an object"],
        ids=["no next URL", "not an object"],
    )
    def test_malformed_sync_response_is_an_error(
        self, fake: FakeContentful, source: ContentfulSource, body: Any
    ) -> None:
        fake.fail_next(200, body=body)

        with pytest.raises(ContentfulError, match="Contentful sent a"):
            source.fetch_sync_page(None)

        assert len(fake.requests) == 1

    def test_unconfigured_settings_are_refused(self) -> None:
        with pytest.raises(ContentfulError, match="not configured"):
            ContentfulSource(ContentfulSettings(space_id=None, access_token=None))


def http_error(status: int) -> Exception:
    response = requests.Response()
    response.status_code = status
    response._content = b"{}"
    error: Exception = get_error(response)
    return error


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (http_error(429), True),
        (http_error(500), True),
        (http_error(502), True),
        (http_error(503), True),
        (http_error(504), True),
        (requests.ConnectionError("refused"), True),
        (requests.ReadTimeout("slow"), True),
        (http_error(400), False),
        (http_error(401), False),
        (http_error(403), False),
        (http_error(404), False),
        (http_error(409), False),
        (ValueError("not an HTTP failure"), False),
    ],
    ids=repr,
)
def test_is_transient(exc: Exception, transient: bool) -> None:
    assert is_transient(exc) is transient


CITY_CONTENT_TYPE = {  # contentful/contentful.py fixtures/client/content_types.yaml, item 0
    "sys": {
        "space": {"sys": {"type": "Link", "linkType": "Space", "id": "cfexampleapi"}},
        "id": "1t9IbcfdCk6m04uISSsaIK",
        "type": "ContentType",
        "createdAt": "2014-02-21T13:42:33.009Z",
        "updatedAt": "2014-02-21T13:42:33.009Z",
        "revision": 1,
    },
    "displayField": "name",
    "name": "City",
    "description": None,
    "fields": [
        {"id": "name", "name": "Name", "type": "Text", "localized": False, "required": True},
        {
            "id": "center",
            "name": "Center",
            "type": "Location",
            "localized": False,
            "required": True,
        },
    ],
}


def test_fake_serves_content_types_with_query_token_auth() -> None:
    with FakeContentful(content_types=[CITY_CONTENT_TYPE]) as fake:
        client = contentful.Client(
            fake.space_id,
            fake.token,
            api_url=fake.url.removeprefix("http://"),
            https=False,
            authorization_as_header=False,
            content_type_cache=False,
        )
        content_types = client.content_types()

    assert [(ct.id, ct.name) for ct in content_types] == [("1t9IbcfdCk6m04uISSsaIK", "City")]
    assert fake.requests[0][1]["access_token"] == fake.token


def test_source_is_named_contentful(source: ContentfulSource) -> None:
    assert source.name == "contentful"
