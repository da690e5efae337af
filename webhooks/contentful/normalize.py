"""Contentful webhook requests (CMA format) → what they ask us to do.

A topic (`X-Contentful-Topic: ContentManagement.<Type>.<action>`) decides the effect:
Entry/Asset `publish` writes the entity, `unpublish`/`delete`/`archive` remove it, any
ContentType topic asks for a delta sync, everything else is acknowledged and ignored.

Revisions: CMA bodies carry several counters. We order by `sys.revision` (what the CDA and
its Sync API report, so webhook and sync revisions compare), else `sys.publishedCounter` (the
same count in CMA form, sent with archived entities), else `sys.publishedVersion`, else
`sys.version`. A removal outranks a publish of the same revision (an unpublish tombstone
carries the revision of the version it took down): `rank = 2 * revision + removal`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from core.errors import json_object
from integration.schemas import Entity, EntityKind, entity_key
from webhooks.exceptions import InvalidPayload

TOPIC_HEADER = "x-contentful-topic"
IDEMPOTENCY_HEADER = "x-contentful-idempotency-key"
REVISION_FIELDS = ("revision", "publishedCounter", "publishedVersion", "version")

Effect = Literal["upsert", "remove", "resync", "ignore"]

_ENTITY_EFFECTS: dict[str, Effect] = {
    "publish": "upsert",
    "unpublish": "remove",
    "delete": "remove",
    "archive": "remove",
}
_SYS_TYPES: dict[str, tuple[EntityKind, bool]] = {
    "Entry": ("Entry", False),
    "Asset": ("Asset", False),
    "DeletedEntry": ("Entry", True),
    "DeletedAsset": ("Asset", True),
}


@dataclass(frozen=True, slots=True)
class Topic:
    raw: str
    entity_type: str = ""
    action: str = ""

    @property
    def effect(self) -> Effect:
        if self.entity_type in ("Entry", "Asset"):
            return _ENTITY_EFFECTS.get(self.action, "ignore")
        if self.entity_type == "ContentType":
            return "resync"
        return "ignore"


@dataclass(frozen=True, slots=True)
class Target:
    """The space and environment a payload belongs to."""

    space: str
    environment: str

    def __str__(self) -> str:
        return f"space {self.space!r}, environment {self.environment!r}"


@dataclass(frozen=True, slots=True)
class EntityChange:
    """One entity to write (`entity`) or remove (`entity is None`), at `revision`."""

    kind: EntityKind
    id: str
    revision: int
    entity: Entity | None

    @property
    def key(self) -> str:
        return entity_key(self.kind, self.id)

    @property
    def rank(self) -> int:
        return 2 * self.revision + (1 if self.entity is None else 0)


def parse_topic(value: str | None) -> Topic:
    """The topic header, split; a missing or empty header is a 400."""
    raw = (value or "").strip()
    if not raw:
        raise InvalidPayload("missing X-Contentful-Topic header")
    parts = raw.split(".")
    if len(parts) != 3 or parts[0] != "ContentManagement":
        return Topic(raw)
    return Topic(raw, entity_type=parts[1], action=parts[2])


def parse_body(body: bytes) -> dict[str, Any]:
    return json_object(body, InvalidPayload)


def dedupe_id(headers: Mapping[str, str], body: bytes) -> str:
    """What identifies one delivery: Contentful's idempotency key, else the body's SHA-256."""
    key = headers.get(IDEMPOTENCY_HEADER, "").strip()
    material = b"key:" + key.encode("utf-8", "surrogateescape") if key else b"body:" + body
    return hashlib.sha256(material).hexdigest()


def _sys(payload: Mapping[str, Any]) -> dict[str, Any]:
    sys = payload.get("sys")
    if not isinstance(sys, dict):
        raise InvalidPayload("payload has no sys object")
    return sys


def _link_id(link: Any) -> str | None:
    target = link.get("sys") if isinstance(link, dict) else None
    value = target.get("id") if isinstance(target, dict) else None
    return value if isinstance(value, str) and value else None


def payload_target(payload: Mapping[str, Any]) -> Target:
    """`sys.space` and `sys.environment` (absent environment: `master`, as before environments)."""
    sys = _sys(payload)
    space = _link_id(sys.get("space"))
    if space is None:
        raise InvalidPayload("sys.space is missing")
    return Target(space, _link_id(sys.get("environment")) or "master")


def revision_of(sys: Mapping[str, Any]) -> int:
    for name in REVISION_FIELDS:
        value = sys.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidPayload(f"sys.{name} must be a non-negative integer")
        return value
    raise InvalidPayload(f"sys has none of {', '.join(REVISION_FIELDS)}")


def entity_change(payload: Mapping[str, Any], topic: Topic) -> EntityChange:
    """The change an Entry/Asset topic's payload asks for; a 400 for a shape we do not know."""
    sys = _sys(payload)
    entity_id = sys.get("id")
    if not isinstance(entity_id, str) or not entity_id:
        raise InvalidPayload("sys.id is missing")
    sys_type = sys.get("type")
    if not isinstance(sys_type, str) or sys_type not in _SYS_TYPES:
        raise InvalidPayload(
            f"sys.type {sys_type!r} is not Entry, Asset, DeletedEntry or DeletedAsset"
        )
    kind, deleted = _SYS_TYPES[sys_type]
    if kind != topic.entity_type:
        raise InvalidPayload(f"topic {topic.raw} carries a {sys_type}")
    revision = revision_of(sys)
    if topic.effect == "remove":
        return EntityChange(kind, entity_id, revision, None)
    if deleted:
        raise InvalidPayload(f"topic {topic.raw} carries a {sys_type} tombstone")
    return EntityChange(kind, entity_id, revision, _entity(payload, sys, kind, revision))


def _entity(
    payload: Mapping[str, Any], sys: Mapping[str, Any], kind: EntityKind, revision: int
) -> Entity:
    fields = payload.get("fields") or {}
    if not isinstance(fields, dict) or not all(isinstance(v, dict) for v in fields.values()):
        raise InvalidPayload("fields must map each field id to {locale: value}")
    content_type = _link_id(sys.get("contentType"))
    if kind == "Entry" and content_type is None:
        raise InvalidPayload("sys.contentType is missing")
    updated_at = sys.get("updatedAt") or sys.get("publishedAt") or sys.get("createdAt") or ""
    return Entity(
        id=sys["id"],
        kind=kind,
        content_type=content_type if kind == "Entry" else None,
        revision=revision,
        updated_at=updated_at if isinstance(updated_at, str) else "",
        fields=fields,
    )
