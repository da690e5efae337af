"""CDA Sync API items → our normalized `Entity` and deletion keys.

Sync items carry every locale (`{"field": {"en-US": value}}`) and a `sys` block. Anything
that is not an Entry, an Asset or a deletion of one (a space, a content type) is ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from integration.schemas import Entity, EntityKind, entity_key

_DELETIONS: dict[str, EntityKind] = {"DeletedEntry": "Entry", "DeletedAsset": "Asset"}


@dataclass(slots=True)
class Changes:
    """What one page changes: entities to write and entity keys to remove."""

    upserts: list[Entity] = field(default_factory=list)
    deletions: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.upserts) + len(self.deletions)


def normalize_items(items: Iterable[dict[str, Any]]) -> Changes:
    changes = Changes()
    for item in items:
        sys = item.get("sys") or {}
        kind = sys.get("type")
        if kind in ("Entry", "Asset"):
            changes.upserts.append(normalize_entity(item))
        elif kind in _DELETIONS and sys.get("id"):
            key = entity_key(_DELETIONS[kind], sys["id"])
            changes.deletions.append(key)
    return changes


def normalize_entity(item: dict[str, Any]) -> Entity:
    sys = item["sys"]
    content_type = ((sys.get("contentType") or {}).get("sys") or {}).get("id")
    return Entity(
        id=sys["id"],
        kind=sys["type"],
        content_type=content_type,
        revision=int(sys.get("revision") or sys.get("publishedVersion") or sys.get("version") or 0),
        updated_at=sys.get("updatedAt") or sys.get("publishedAt") or sys.get("createdAt") or "",
        fields=item.get("fields") or {},
    )
