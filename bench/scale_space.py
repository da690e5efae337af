"""The generated space of the scale benchmark (issue 14), its fake CDA and its webhooks.

Templates of 20 slots; each slot has a baseline entry and 3 variants, each variant linking its
own entry; every entry has two locales (en-US, de-DE) and an image asset; each variant targets 2
audiences of a shared pool. One template with its slots, variants, entries and assets is 241
entities; a space of N entities holds ceil(N / 241) templates (entries and assets both count).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from tests.fakes.contentful import FakeContentful, _Cursor, build_entry
from tests.fakes.loopback import Response
from webhooks.verification import sign_contentful

SPACE = "scalebench"
TOKEN = "scale-bench-token"
SECRET = "scale-bench-webhook-secret-0123456789abcdef0123456789abcdef0123456789"
WEBHOOK_PATH = "/webhooks/contentful"
SLOTS = 20
VARIANTS = 3
AUDIENCES = 40
PER_TEMPLATE = 1 + SLOTS * (1 + 2 + VARIANTS * (1 + 2))  # template + slot, baseline + asset, ...
STAMP = "2026-11-01T00:00:00.000Z"
Item = dict[str, Any]


class ScaleFake(FakeContentful):
    """The loopback fake CDA, with the initial sync's result computed once, not per page
    (the fake recomputes and deep-copies the whole history for every page it serves)."""

    def __init__(self, items: list[Item], page_size: int) -> None:
        super().__init__(SPACE, "master", TOKEN, pages=[items], page_size=page_size)
        self._memo: tuple[tuple[int, int, bool], list[Item]] | None = None
        self.first_sync_at: float | None = None  # when the service asked for its initial sync

    def handle(self, path: str, query: dict[str, str], headers: Mapping[str, str]) -> Response:
        if self.first_sync_at is None and query.get("initial") == "true":
            self.first_sync_at = time.time()
        return super().handle(path, query, headers)

    def _changes(self, cursor: _Cursor) -> list[Item]:
        key = (cursor.since, cursor.upto, cursor.initial)
        if self._memo is None or self._memo[0] != key:
            self._memo = (key, super()._changes(cursor))
        return self._memo[1]


def _link(entity_id: str, kind: str = "Entry") -> Item:
    return {"sys": {"type": "Link", "linkType": kind, "id": entity_id}}


def _sys() -> dict[str, Any]:
    return {
        "revision": 1,
        "createdAt": STAMP,
        "updatedAt": STAMP,
        "space": _link(SPACE, "Space"),
        "environment": _link("master", "Environment"),
    }


def _en(value: Any) -> dict[str, Any]:
    return {"en-US": value}


def asset(asset_id: str) -> Item:
    file = {"url": f"//images.example/{asset_id}.jpg", "contentType": "image/jpeg"}
    return {
        "sys": {"id": asset_id, "type": "Asset", **_sys()},
        "fields": {"title": {"en-US": asset_id, "de-DE": f"{asset_id} (de)"}, "file": _en(file)},
    }


def content(entry_id: str, headline: str = "") -> Item:
    fields = {
        "headline": {"en-US": headline or f"Headline {entry_id}", "de-DE": f"Titel {entry_id}"},
        "body": {"en-US": f"Body of {entry_id} " * 4, "de-DE": f"Text von {entry_id} " * 4},
        "image": _en(_link(f"{entry_id}-img", "Asset")),
    }
    return build_entry(entry_id, "hero", fields, **_sys())


def _audience(index: int) -> Item:
    fields = {"key": _en(f"aud-{index}"), "segments": _en([f"segment-{index}"])}
    return build_entry(f"aud-{index}", "mbAudience", fields, **_sys())


def _variant(slot_id: str, index: int) -> list[Item]:
    variant_id, entry_id = f"{slot_id}-v{index}", f"{slot_id}-e{index}"
    audiences = [
        _link(f"aud-{(zlib.crc32(variant_id.encode()) + i) % AUDIENCES}") for i in range(2)
    ]
    fields = {
        "key": _en(variant_id),
        "entry": _en(_link(entry_id)),
        "audiences": _en(audiences),
        "priority": _en(index),
    }
    variant = build_entry(variant_id, "mbVariant", fields, **_sys())
    return [variant, content(entry_id), asset(f"{entry_id}-img")]


def baseline_id(template: int, slot: int) -> str:
    return f"t{template}-s{slot}-base"


def _slot(template: int, slot: int) -> list[Item]:
    slot_id = f"t{template}-s{slot}"
    base = baseline_id(template, slot)
    items = [content(base), asset(f"{base}-img")]
    for index in range(VARIANTS):
        items += _variant(slot_id, index)
    fields = {
        "key": _en(slot_id),
        "baseline": _en(_link(base)),
        "variants": _en([_link(f"{slot_id}-v{i}") for i in range(VARIANTS)]),
    }
    return [*items, build_entry(slot_id, "mbSlot", fields, **_sys())]


def _template(template: int) -> list[Item]:
    items: list[Item] = []
    for slot in range(SLOTS):
        items += _slot(template, slot)
    fields = {
        "key": _en(f"t{template}"),
        "slots": _en([_link(f"t{template}-s{s}") for s in range(SLOTS)]),
    }
    return [*items, build_entry(f"tpl-{template}", "mbTemplate", fields, **_sys())]


def templates_for(entities: int) -> int:
    return max(1, -(-entities // PER_TEMPLATE))


def space(entities: int) -> list[Item]:
    """The items of an initial sync: audiences first, then template by template."""
    items = [_audience(i) for i in range(AUDIENCES)]
    for template in range(templates_for(entities)):
        items += _template(template)
    return items


def publish_webhook(entry_id: str, revision: int, headline: str) -> tuple[bytes, dict[str, str]]:
    """A signed `ContentManagement.Entry.publish` of a content entry with a new headline."""
    item = content(entry_id, headline)
    item["sys"].update(
        revision=revision,
        publishedVersion=2 * revision + 1,
        updatedAt=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    )
    body = orjson.dumps({"metadata": {"tags": []}, "sys": item["sys"], "fields": item["fields"]})
    headers = {
        "content-type": "application/vnd.contentful.management.v1+json",
        "x-contentful-topic": "ContentManagement.Entry.publish",
    }
    signature = sign_contentful(
        secret=SECRET,
        method="POST",
        path=WEBHOOK_PATH,
        headers=headers,
        body=body,
        timestamp_ms=time.time_ns() // 1_000_000,
    )
    return body, headers | signature
