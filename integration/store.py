"""Redis persistence of the synced content: entities, locales, sync token, content version.

Each sync page is written in one MULTI/EXEC transaction together with its token and a version
bump, so a crash between pages leaves a consistent store that resumes from the stored token.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import orjson
from redis.asyncio import Redis
from redis.exceptions import WatchError

from core.redis import Keys
from integration.normalize import Changes
from integration.schemas import Entity, Locale


@dataclass(frozen=True, slots=True)
class StoredContent:
    """A consistent read of everything the library compiler needs."""

    version: int
    entities: dict[str, Entity] = field(default_factory=dict)
    locales: list[Locale] = field(default_factory=list)
    sync_token: str | None = None
    synced_at: float | None = None


@dataclass(frozen=True, slots=True)
class ContentChange:
    """A "content changed" message that says what changed, so replicas can patch their snapshot.

    `base` → `version` is the version step of one write that touched only `keys` (entity keys).
    Any other message on the channel (the sync's `changed`) means "reload everything".
    """

    base: int
    version: int
    keys: tuple[str, ...]

    def encode(self) -> bytes:
        return orjson.dumps({"base": self.base, "version": self.version, "keys": self.keys})

    @classmethod
    def decode(cls, raw: bytes | str) -> ContentChange | None:
        """The change a message describes; None for a plain "changed" or anything unexpected."""
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(data, dict):
            return None
        base, version, keys = data.get("base"), data.get("version"), data.get("keys")
        if not (isinstance(base, int) and isinstance(version, int) and isinstance(keys, list)):
            return None
        if not all(isinstance(k, str) for k in keys):
            return None
        return cls(base=base, version=version, keys=tuple(keys))


def encode_locales(locales: list[Locale]) -> bytes:
    return orjson.dumps(
        [
            {"code": x.code, "name": x.name, "default": x.default, "fallbackCode": x.fallback_code}
            for x in locales
        ]
    )


def decode_locales(raw: bytes | str | None) -> list[Locale]:
    if not raw:
        return []
    return [
        Locale(
            code=x["code"],
            name=x.get("name", ""),
            default=bool(x.get("default")),
            fallback_code=x.get("fallbackCode"),
        )
        for x in orjson.loads(raw)
    ]


def _text(raw: bytes | str | None) -> str | None:
    return raw.decode() if isinstance(raw, bytes) else raw


class ContentStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    @property
    def keys(self) -> Keys:
        return self._keys

    async def sync_token(self) -> str | None:
        return _text(await self._redis.get(self._keys.sync_token))

    async def version(self) -> int:
        return int(await self._redis.get(self._keys.version) or 0)

    async def apply(
        self, changes: Changes, *, token: str | None = None, locales: list[Locale] | None = None
    ) -> int:
        """Write one page atomically; bump and return the version when anything changed."""
        keys = self._keys
        async with self._redis.pipeline(transaction=True) as pipe:
            if changes.upserts:
                pipe.hset(
                    keys.entities,
                    mapping={e.key: orjson.dumps(e.to_json()) for e in changes.upserts},
                )
            if changes.deletions:
                pipe.hdel(keys.entities, *changes.deletions)
            if changes.removal_ranks:
                # What the sync deleted must not come back through a late, older webhook.
                pipe.hset(keys.revisions, mapping=changes.removal_ranks)  # type: ignore[arg-type]
            if locales is not None:
                pipe.set(keys.locales, encode_locales(locales))
            if token is not None:
                pipe.set(keys.sync_token, token)
                pipe.set(keys.synced_at, repr(time.time()))
            bump = bool(changes) or locales is not None
            if bump:
                pipe.incr(keys.version)
                pipe.publish(keys.content_channel, b"changed")
            else:
                pipe.get(keys.version)
            results = await pipe.execute()
        return int(results[-2] if bump else results[-1] or 0)

    async def locales(self) -> list[Locale]:
        return decode_locales(await self._redis.get(self._keys.locales))

    async def entity_keys(self) -> set[str]:
        return {_text(k) or "" for k in await self._redis.hkeys(self._keys.entities)}

    async def clear_token(self) -> None:
        await self._redis.delete(self._keys.sync_token)

    async def load(self) -> StoredContent:
        keys = self._keys
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(keys.version)
            pipe.hgetall(keys.entities)
            pipe.get(keys.locales)
            pipe.get(keys.sync_token)
            pipe.get(keys.synced_at)
            version, raw_entities, raw_locales, token, synced_at = await pipe.execute()
        entities = {}
        for raw in raw_entities.values():
            entity = Entity.from_json(orjson.loads(raw))
            entities[entity.key] = entity
        return StoredContent(
            version=int(version or 0),
            entities=entities,
            locales=decode_locales(raw_locales),
            sync_token=_text(token),
            synced_at=float(synced_at) if synced_at else None,
        )

    async def synced_at(self) -> float | None:
        raw = await self._redis.get(self._keys.synced_at)
        return float(raw) if raw else None

    async def read_entities(self, entity_keys: tuple[str, ...]) -> dict[str, Entity | None]:
        """The stored entities of `entity_keys` (one HMGET); None for a key that is absent."""
        if not entity_keys:
            return {}
        raws = await self._redis.hmget(self._keys.entities, list(entity_keys))
        return {
            key: Entity.from_json(orjson.loads(raw)) if raw else None
            for key, raw in zip(entity_keys, raws, strict=True)
        }


class SyncLock:
    """A Redis lock with expiry so that one replica at a time runs the sync."""

    def __init__(self, redis: Redis, key: str, ttl_seconds: float) -> None:
        self._redis = redis
        self._key = key
        self._ttl_ms = int(ttl_seconds * 1000)
        self._owner = uuid.uuid4().hex

    async def acquire(self) -> bool:
        return bool(await self._redis.set(self._key, self._owner, nx=True, px=self._ttl_ms))

    async def release(self) -> None:
        """Delete the lock only if we still own it (check-and-delete under WATCH)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(self._key)
                if _text(await pipe.get(self._key)) != self._owner:
                    await pipe.reset()  # type: ignore[no-untyped-call]
                    return
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.delete(self._key)
                await pipe.execute()
            except WatchError:
                return
