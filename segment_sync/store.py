"""Visitor profiles in Redis: one hash per visitor id, hash-tagged for Redis Cluster.

Layout (see docs/storage.md): `<prefix>:{v:u:<userId>}:profile` and
`<prefix>:{v:a:<anonymousId>}:profile`, fields `traits`, `audiences`, `signals` (JSON) and
`consent` (`1`/`0`). The known-user profile wins over the anonymous one field by field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from redis.asyncio import Redis

from assembly.ports import Profile
from core.redis import Keys


def visitor_key(keys: Keys, *, user_id: str | None = None, anonymous_id: str | None = None) -> str:
    if user_id:
        return keys.profile(f"u:{user_id}")
    if anonymous_id:
        return keys.profile(f"a:{anonymous_id}")
    raise ValueError("a visitor needs a userId or an anonymousId")


class RedisProfileStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def read(self, user_id: str | None, anonymous_id: str | None) -> Profile | None:
        names = []
        if anonymous_id:
            names.append(visitor_key(self._keys, anonymous_id=anonymous_id))
        if user_id:
            names.append(visitor_key(self._keys, user_id=user_id))
        if not names:
            return None
        if len(names) == 1:
            rows = [await self._redis.hgetall(names[0])]
        else:
            async with self._redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hgetall(name)
                rows = await pipe.execute()
        merged: dict[Any, Any] = {}
        for row in rows:
            merged.update(row)  # the client returns bytes (decode_responses is off)
        return _decode(merged) if merged else None

    async def write(
        self,
        *,
        user_id: str | None = None,
        anonymous_id: str | None = None,
        traits: Mapping[str, Any] | None = None,
        audiences: set[str] | frozenset[str] | None = None,
        signals: Mapping[str, Any] | None = None,
        consent: bool | None = None,
    ) -> None:
        """Replace the given parts of one visitor's profile (the event pipeline's writer)."""
        fields: dict[str, bytes] = {}
        if traits is not None:
            fields["traits"] = orjson.dumps(dict(traits))
        if audiences is not None:
            fields["audiences"] = orjson.dumps(sorted(audiences))
        if signals is not None:
            fields["signals"] = orjson.dumps(dict(signals))
        if consent is not None:
            fields["consent"] = b"1" if consent else b"0"
        if fields:
            key = visitor_key(self._keys, user_id=user_id, anonymous_id=anonymous_id)
            await self._redis.hset(key, mapping=fields)  # type: ignore[arg-type]


def _decode(row: Mapping[Any, Any]) -> Profile:
    consent = row.get(b"consent")
    return Profile(
        traits=orjson.loads(row[b"traits"]) if b"traits" in row else {},
        audiences=frozenset(orjson.loads(row[b"audiences"]))
        if b"audiences" in row
        else frozenset(),
        signals=orjson.loads(row[b"signals"]) if b"signals" in row else {},
        consent=None if consent is None else consent == b"1",
    )
