"""Localized, link-resolved views of entries, as the assemble answer carries them.

Locale fallback follows Contentful: a field missing in `de-DE` is taken from its `fallbackCode`
chain (cycle-safe); a locale without a fallback simply omits the field. Links to entries and
assets are resolved up to `depth` levels; a link back to an entry already on the path (a cycle)
or beyond the depth stays a link; a link to a missing or unpublished target is dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from integration.schemas import Entity, Locale, entity_key


def fallback_chains(locales: list[Locale]) -> dict[str, tuple[str, ...]]:
    """For each locale code, the codes to try in order: itself, its fallback, and so on."""
    by_code = {x.code: x for x in locales}
    chains: dict[str, tuple[str, ...]] = {}
    for code in by_code:
        chain = [code]
        nxt = by_code[code].fallback_code
        while nxt and nxt in by_code and nxt not in chain:
            chain.append(nxt)
            nxt = by_code[nxt].fallback_code
        chains[code] = tuple(chain)
    return chains


def localized(values: Mapping[str, Any], chain: tuple[str, ...]) -> tuple[bool, Any]:
    for code in chain:
        if code in values:
            return True, values[code]
    return False, None


class Resolver:
    def __init__(
        self, entities: Mapping[str, Entity], chains: Mapping[str, tuple[str, ...]], depth: int
    ) -> None:
        self._entities = entities
        self._chains = chains
        self._depth = depth

    def entry(
        self, entry_id: str, locale: str, read: set[str] | None = None
    ) -> dict[str, Any] | None:
        """The entry localized and resolved; `read` collects every entity key the answer
        depends on (the entry and each link met, found or not), for cache invalidation."""
        key = entity_key("Entry", entry_id)
        seen = read if read is not None else set()
        seen.add(key)
        entity = self._entities.get(key)
        if entity is None:
            return None
        chain = self._chains.get(locale, (locale,))
        return self._render(entity, _Walk(chain, seen), (entity.key,), self._depth)

    def _render(
        self, entity: Entity, walk: _Walk, path: tuple[str, ...], depth: int
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        for name, values in entity.fields.items():
            found, value = localized(values, walk.chain)
            if found:
                resolved = self._value(value, walk, path, depth)
                if resolved is not _DROP:
                    fields[name] = resolved
        if entity.kind == "Asset":
            return {"id": entity.id, "type": "Asset", "fields": fields}
        return {"id": entity.id, "contentType": entity.content_type, "fields": fields}

    def _value(self, value: Any, walk: _Walk, path: tuple[str, ...], depth: int) -> Any:
        if isinstance(value, list):
            items = (self._value(v, walk, path, depth) for v in value)
            return [v for v in items if v is not _DROP]
        link = _as_link(value)
        if link is None:
            return value
        walk.read.add(link)
        target = self._entities.get(link)
        if target is None:
            return _DROP
        if depth <= 0 or link in path:
            return {"id": target.id, "type": "Link", "linkType": target.kind}
        return self._render(target, walk, (*path, link), depth - 1)


@dataclass(frozen=True, slots=True)
class _Walk:
    """One resolution: the locale chain, and the entity keys it has read."""

    chain: tuple[str, ...]
    read: set[str]


_DROP: Any = object()


def _as_link(value: Any) -> str | None:
    """The store key a Link value points at, or None when the value is not a Link."""
    if not isinstance(value, dict) or len(value) != 1:
        return None
    sys = value.get("sys")
    if not isinstance(sys, dict) or sys.get("type") != "Link":
        return None
    kind = sys.get("linkType")
    if kind not in ("Entry", "Asset") or not isinstance(sys.get("id"), str):
        return None
    return entity_key(kind, sys["id"])


def link_id(value: Any, kind: str = "Entry") -> str | None:
    """The id of a Link of the given kind, or None."""
    key = _as_link(value)
    prefix = f"{kind}:"
    return key[len(prefix) :] if key and key.startswith(prefix) else None
