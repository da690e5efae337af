"""Redis persistence of the synced content, and its one guarded writer.

Every change to the live entities goes through `ContentStore.write` (a delta sync, a webhook) or
`ContentStore.install` (a full sync's generation), both atomic server-side scripts
(`integration/store_scripts.py`) that compare Contentful's `sys.revision` as a rank
(`2 * revision`, `+1` for a removal) and never replace a newer rank with an older one.

A full sync stages its pages under a generation of their own and switches the live set to it in
one step once complete, so no replica ever sees a half-built library. A delta sync is written in
one step at its end, with its token: a crash anywhere leaves the previous consistent state.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.redis import Keys
from integration import store_scripts
from integration.metrics import CONTENT_WRITES_SKIPPED
from integration.normalize import Changes
from integration.schemas import Entity, Locale

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class StoredContent:
    """A consistent read of everything the library compiler needs."""

    version: int
    entities: dict[str, Entity] = field(default_factory=dict)
    locales: list[Locale] = field(default_factory=list)
    sync_token: str | None = None
    synced_at: float | None = None
    epoch: str | None = None  # None: the store holds no complete generation
    generation: Generation | None = None


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


@dataclass(frozen=True, slots=True)
class ContentWrite:
    """One entity to store (`payload`, encoded) or remove (`payload is None`) at `rank`.

    `rank` is `2 * sys.revision` (`+1` for a removal); 0 for a removal whose revision is
    unknown, which removes whatever is stored.
    """

    key: str
    rank: int
    payload: bytes | None

    @classmethod
    def upsert(cls, entity: Entity) -> ContentWrite:
        return cls(entity.key, 2 * entity.revision, orjson.dumps(entity.to_json()))

    @classmethod
    def removal(cls, key: str) -> ContentWrite:
        """A removal that outranks whatever is stored (rank 0; the script leaves a tombstone)."""
        return cls(key, 0, None)


def writes_of(changes: Changes) -> list[ContentWrite]:
    """The guarded writes of one sync page (or a whole delta)."""
    writes = [ContentWrite.upsert(e) for e in changes.upserts]
    # A Sync API deletion is a resource of its own: its `sys.revision` counts the deletion, not
    # the entity's publishes (the reference pages show revision 1 whatever was deleted), so it
    # does not compare with publish revisions. The sync is authoritative for deletions: the
    # removal outranks whatever is stored (rank 0), and leaves a tombstone rank one above it.
    writes.extend(ContentWrite.removal(k) for k in changes.deletions)
    return writes


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What `ContentStore.write` did: `applied` keys moved `base` → `version`; `skipped` maps
    each key it refused to the newer rank the store holds."""

    status: str  # "applied", "unchanged" or "duplicate"
    base: int
    version: int
    applied: tuple[str, ...] = ()
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def change(self) -> ContentChange:
        return ContentChange(self.base, self.version, self.applied)


@dataclass(frozen=True, slots=True)
class Generation:
    """A complete library the store holds: its id, when it was built, its size."""

    id: str
    built_at: float
    entities: int

    def encode(self) -> bytes:
        return orjson.dumps({"id": self.id, "builtAt": self.built_at, "entities": self.entities})

    @classmethod
    def decode(cls, raw: bytes | str | None) -> Generation | None:
        if not raw:
            return None
        data = orjson.loads(raw)
        return cls(str(data["id"]), float(data["builtAt"]), int(data.get("entities", 0)))


@dataclass(frozen=True, slots=True)
class InstallResult:
    version: int
    kept: int  # staged entities replaced by a newer live write (a webhook during the sync)
    pruned: int  # live entities the space no longer has
    epoch: str


@dataclass(frozen=True, slots=True)
class ChangedSince:
    """`ContentStore.changed_since`: the store's version and generation, and the keys written."""

    version: int
    generation: Generation | None
    locales: list[Locale]
    keys: tuple[str, ...]


def new_generation_id() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"


STAGING_TTL_SECONDS = 3600  # a staged generation whose sync died goes away by itself


class ContentStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._write_script = redis.register_script(store_scripts.WRITE)
        self._install_script = redis.register_script(store_scripts.INSTALL)

    @property
    def keys(self) -> Keys:
        return self._keys

    async def sync_token(self) -> str | None:
        return _text(await self._redis.get(self._keys.sync_token))

    async def version(self) -> int:
        return int(await self._redis.get(self._keys.version) or 0)

    async def head(self) -> tuple[str | None, int]:
        """The store's epoch marker (None: no complete generation) and content version."""
        epoch, version = await self._redis.mget(self._keys.epoch, self._keys.version)
        return _text(epoch), int(version or 0)

    async def write(
        self,
        writes: Sequence[ContentWrite],
        *,
        token: str | None = None,
        locales: list[Locale] | None = None,
        dedupe: tuple[str, int] | None = None,
    ) -> WriteResult:
        """Apply `writes` in one atomic step, each only if its rank is above the stored one.

        With `token`, the sync token moves in the same step. With `dedupe` (key, ttl), the
        whole write is refused as `duplicate` when the key exists, and sets it otherwise.
        """
        k = self._keys
        dedupe_key, dedupe_ttl = dedupe or (k.no_dedupe, 0)
        args: list[str | bytes | int] = [
            k.content_channel,
            token or "",
            encode_locales(locales) if locales is not None else "",
            repr(time.time()),
            dedupe_ttl,
        ]
        for w in writes:
            args.extend((w.key, w.rank, w.payload if w.payload is not None else b""))
        keys = [k.entities, k.revisions, k.version, k.written, k.sync_token, k.locales]
        raw = await self._write_script(keys=[*keys, k.synced_at, dedupe_key], args=args)
        result = _write_result(raw)
        if result.skipped:
            CONTENT_WRITES_SKIPPED.inc(len(result.skipped))
            log.info("content.write_skipped", entities=_sample(result.skipped))
        return result

    async def stage(self, generation: str, changes: Changes) -> None:
        """Add one page of a full sync to a generation being built (invisible until installed)."""
        entities, ranks = (
            self._keys.staged_entities(generation),
            self._keys.staged_ranks(generation),
        )
        async with self._redis.pipeline(transaction=True) as pipe:
            if changes.upserts:
                pipe.hset(
                    entities, mapping={e.key: orjson.dumps(e.to_json()) for e in changes.upserts}
                )
                pipe.hset(ranks, mapping={e.key: 2 * e.revision for e in changes.upserts})
            if changes.deletions:
                pipe.hdel(entities, *changes.deletions)
                pipe.hdel(ranks, *changes.deletions)
            pipe.expire(entities, STAGING_TTL_SECONDS)
            pipe.expire(ranks, STAGING_TTL_SECONDS)
            await pipe.execute()

    async def load_staged(self, generation: str) -> dict[str, Entity]:
        raw = await self._redis.hgetall(self._keys.staged_entities(generation))
        return _decode_entities(raw.values())

    async def discard(self, generation: str) -> None:
        k = self._keys
        await self._redis.unlink(k.staged_entities(generation), k.staged_ranks(generation))

    async def install(
        self, generation: Generation, *, since: int, token: str, locales: list[Locale] | None
    ) -> InstallResult:
        """Switch the live entities to a staged generation in one step.

        What a webhook wrote with a newer rank, or wrote after `since` (the version when the
        staging began), stays; what the generation lacks and nobody wrote since is pruned.
        """
        k, gen = self._keys, generation.id
        keys = [k.entities, k.revisions, k.version, k.written, k.staged_entities(gen)]
        keys += [k.staged_ranks(gen), k.sync_token, k.locales, k.synced_at, k.generation, k.epoch]
        args: list[str | bytes | int] = [k.content_channel, since, token]
        args += [encode_locales(locales) if locales is not None else "", repr(time.time())]
        args += [generation.encode(), uuid.uuid4().hex]
        raw = await self._install_script(keys=[*keys, k.retired_entities(gen)], args=args)
        version, kept, pruned, epoch = raw
        return InstallResult(int(version), int(kept), int(pruned), _text(epoch) or "")

    async def locales(self) -> list[Locale]:
        return decode_locales(await self._redis.get(self._keys.locales))

    async def entity_keys(self) -> set[str]:
        return {_text(k) or "" for k in await self._redis.hkeys(self._keys.entities)}

    async def load(self) -> StoredContent:
        keys = self._keys
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(keys.version)
            pipe.hgetall(keys.entities)
            pipe.get(keys.locales)
            pipe.get(keys.sync_token)
            pipe.get(keys.synced_at)
            pipe.get(keys.epoch)
            pipe.get(keys.generation)
            version, raw_entities, raw_locales, token, synced_at, epoch, gen = await pipe.execute()
        return StoredContent(
            version=int(version or 0),
            entities=_decode_entities(raw_entities.values()),
            locales=decode_locales(raw_locales),
            sync_token=_text(token),
            synced_at=float(synced_at) if synced_at else None,
            epoch=_text(epoch),
            generation=Generation.decode(gen),
        )

    async def changed_since(self, version: int) -> ChangedSince:
        """What the guarded writer changed after `version`, read in one transaction.

        `keys` comes from the `written` index, which only writes fill: an install replaces the
        entities wholesale, so the caller compares `generation` (and `locales`) with its own.
        """
        k = self._keys
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(k.version)
            pipe.get(k.generation)
            pipe.get(k.locales)
            pipe.zrangebyscore(k.written, f"({version}", "+inf")
            now, generation, locales, keys = await pipe.execute()
        return ChangedSince(
            version=int(now or 0),
            generation=Generation.decode(generation),
            locales=decode_locales(locales),
            keys=tuple(_text(key) or "" for key in keys),
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

    async def note_sync(self, **fields: str | float) -> None:
        """Record the sync's state for every replica's `/readyz` (running, last ok, last error)."""
        await self._redis.hset(
            self._keys.sync_state, mapping={k: str(v) for k, v in fields.items()}
        )

    async def sync_state(self) -> dict[str, str]:
        raw = await self._redis.hgetall(self._keys.sync_state)
        return {_text(k) or "": _text(v) or "" for k, v in raw.items()}


def _decode_entities(raws: Iterable[bytes | str]) -> dict[str, Entity]:
    entities = {}
    for raw in raws:
        entity = Entity.from_json(orjson.loads(raw))
        entities[entity.key] = entity
    return entities


def _write_result(raw: list[Any]) -> WriteResult:
    status, base, version, *rest = (x.decode() if isinstance(x, bytes) else x for x in raw)
    split = rest.index("|") if "|" in rest else len(rest)
    applied = tuple(str(k) for k in rest[:split])
    tail = rest[split + 1 :]
    skipped = {str(tail[i]): int(tail[i + 1]) for i in range(0, len(tail), 2)}
    return WriteResult(str(status), int(base), int(version), applied, skipped)


def _sample(skipped: Mapping[str, int], limit: int = 10) -> list[str]:
    return [f"{key}@{rank}" for key, rank in list(skipped.items())[:limit]]


_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class SyncLock:
    """A lease so that one replica at a time runs the sync.

    The lease is short (`ttl_seconds`) and renewed while the holder works, so a process that
    dies (kill -9) blocks the next sync for at most one lease; only the owner (a token of its
    own) can renew or release it, and a clean shutdown releases it at once.
    """

    def __init__(self, redis: Redis, key: str, ttl_seconds: float) -> None:
        self._redis = redis
        self._key = key
        self._ttl_ms = int(ttl_seconds * 1000)
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    @property
    def owner(self) -> str:
        return self._owner

    @property
    def ttl_seconds(self) -> float:
        return self._ttl_ms / 1000

    async def acquire(self) -> bool:
        return bool(await self._redis.set(self._key, self._owner, nx=True, px=self._ttl_ms))

    async def renew(self) -> bool:
        """Extend the lease; False when it is no longer ours."""
        return bool(await self._renew(keys=[self._key], args=[self._owner, self._ttl_ms]))

    async def release(self) -> None:
        """Delete the lease only if we still own it."""
        await self._release(keys=[self._key], args=[self._owner])

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[bool]:
        """Hold the lease (renewed every third of its life) for the block; yields False and
        holds nothing when another replica has it."""
        if not await self.acquire():
            yield False
            return
        renewer = asyncio.create_task(self._keep(), name="sync-lease")
        try:
            yield True
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            with contextlib.suppress(RedisError, OSError):
                await asyncio.shield(self.release())

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self._ttl_ms / 3000)
            try:
                if not await self.renew():
                    log.error("contentful.sync.lease_lost", owner=self._owner)
                    return
            except (RedisError, OSError) as exc:
                log.warning("contentful.sync.lease_renew_failed", error=type(exc).__name__)
