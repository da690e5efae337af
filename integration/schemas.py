"""Our own shapes of Contentful data, independent of the SDK's classes.

`Entity` is the normalized form every path produces (sync pages, webhooks, the demo space):
fields keep every locale, `{field_id: {locale: value}}`, exactly as the Sync API sends them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

EntityKind = Literal["Entry", "Asset"]


@dataclass(frozen=True, slots=True)
class Locale:
    code: str
    name: str = ""
    default: bool = False
    fallback_code: str | None = None


@dataclass(frozen=True, slots=True)
class Entity:
    """One published entry or asset, all locales."""

    id: str
    kind: EntityKind
    content_type: str | None
    revision: int
    updated_at: str
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return entity_key(self.kind, self.id)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "contentType": self.content_type,
            "revision": self.revision,
            "updatedAt": self.updated_at,
            "fields": self.fields,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Entity:
        return cls(
            id=data["id"],
            kind=data["kind"],
            content_type=data.get("contentType"),
            revision=int(data.get("revision", 0)),
            updated_at=data.get("updatedAt", ""),
            fields=data.get("fields") or {},
        )


def entity_key(kind: EntityKind, entity_id: str) -> str:
    """Hash field of an entity in the store: `Entry:<id>` or `Asset:<id>`."""
    return f"{kind}:{entity_id}"


@dataclass(frozen=True, slots=True)
class SyncPage:
    """One page of the Sync API, as raw CDA items plus the token to ask for next."""

    items: list[dict[str, Any]]
    next_page_token: str | None = None
    next_sync_token: str | None = None

    @property
    def token(self) -> str:
        """The token to store after this page: the next page's, or the next sync's."""
        token = self.next_page_token or self.next_sync_token
        if not token:
            raise ValueError("sync page carries neither nextPageUrl nor nextSyncUrl")
        return token


class ContentSource(Protocol):
    """Where content comes from. Blocking calls: run them off the event loop."""

    @property
    def name(self) -> str: ...

    def fetch_sync_page(self, token: str | None) -> SyncPage:
        """`token=None` starts an initial sync; otherwise continue from the token."""
        ...

    def fetch_locales(self) -> list[Locale]: ...
