"""Contentful's Preview API (drafts) through the official `contentful` SDK, fetched on demand.

The Preview API has no Sync API: the whole draft library is read page by page from `/entries`
(`locale=*`, so fields keep every locale as the Sync API sends them; `include=1` brings the
assets those entries link, so no `/assets` walk is needed) and `/locales`, then normalized
with `integration.normalize` like a sync page. The same retry policy as the delivery client
applies (`integration.client.call_with_retries`). Blocking: call it from a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import requests
import structlog
from contentful.errors import get_error
from tenacity.wait import WaitBaseT

from integration.client import call_with_retries, delivery_client, retry_policy
from integration.config import ContentfulSettings
from integration.exceptions import ContentfulError
from integration.normalize import normalize_entity
from integration.schemas import Entity, Locale
from integration.store import StoredContent

__all__ = ["PreviewSource", "preview_source"]

log = structlog.get_logger()

PAGE_SIZE = 500  # entries per request (Contentful allows 1000; includes make pages heavier)
MAX_PAGES = 200  # 100,000 entries: far beyond a personalization library, stops a runaway loop


class PreviewSource:
    """The Preview API of one space environment (`CONTENTFUL_PREVIEW_TOKEN`, `_PREVIEW_URL`)."""

    def __init__(
        self,
        settings: ContentfulSettings,
        *,
        wait: WaitBaseT | None = None,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self._client = _preview_client(settings)
        self._page_size = page_size
        self._retrying = retry_policy(settings, wait=wait)

    def fetch(self) -> StoredContent:
        """Every entry and asset as its latest draft, and the locales (`version` 0)."""
        entities: dict[str, Entity] = {}
        for item in self._items():
            entity = normalize_entity(item)
            entities[entity.key] = entity
        locales = [_locale(x) for x in self._get("locales", self._client.locales, {})["items"]]
        log.info("contentful.preview.fetched", entities=len(entities), locales=len(locales))
        return StoredContent(version=0, entities=entities, locales=locales)

    def _items(self) -> Iterator[dict[str, Any]]:
        """Entries page by page (`limit`/`skip`), each page's included assets and entries."""
        skip = 0
        for _ in range(MAX_PAGES):
            query = {"locale": "*", "include": 1, "limit": self._page_size, "skip": skip}
            page = self._get("entries", self._client.entries, query)
            items = page.get("items") or []
            yield from items
            includes = page.get("includes") or {}
            for kind in ("Entry", "Asset"):
                yield from includes.get(kind) or []
            skip += len(items)
            if not items or skip >= int(page.get("total") or 0):
                return
        raise ContentfulError(f"the Preview API kept paging past {MAX_PAGES} pages of entries")

    def _get(
        self, operation: str, call: Callable[[dict[str, Any]], Any], query: dict[str, Any]
    ) -> dict[str, Any]:
        def request() -> dict[str, Any]:
            response: requests.Response = call(dict(query))
            if response.status_code != 200:
                raise get_error(response)
            body = response.json()
            if not isinstance(body, dict) or not isinstance(body.get("items"), list):
                raise ValueError("not a collection (no items)")
            return body

        return call_with_retries(self._retrying, f"preview {operation}", request)


def preview_source(settings: ContentfulSettings) -> PreviewSource | None:
    """The Preview API when `CONTENTFUL_PREVIEW_TOKEN` is set (with a space), else None."""
    if settings.preview_token is None or not settings.space_id:
        return None
    return PreviewSource(settings)


def _preview_client(settings: ContentfulSettings) -> Any:
    if settings.preview_token is None or not settings.space_id:
        raise ContentfulError(
            "the Preview API is not configured: set CONTENTFUL_SPACE_ID and "
            "CONTENTFUL_PREVIEW_TOKEN"
        )
    # raw: our own normalization reads the JSON, as it does for sync pages
    return delivery_client(settings, settings.preview_token, settings.preview_url, raw=True)


def _locale(item: dict[str, Any]) -> Locale:
    fallback = item.get("fallbackCode")
    return Locale(
        code=str(item["code"]),
        name=str(item.get("name") or ""),
        default=bool(item.get("default")),
        fallback_code=str(fallback) if fallback else None,
    )
