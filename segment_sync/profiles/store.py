"""Visitor profiles in Redis: one hash per visitor id, hash-tagged for Redis Cluster.

Layout (state.py, docs/events.md): `<prefix>:{v:u:<userId>}:profile` and
`<prefix>:{v:a:<anonymousId>}:profile`. The event consumer (apply.py) keeps one merged profile
per visitor under its canonical id and a mirror of it under every linked id, so the read path
below stays one round trip whichever ids the request names. Signals that depend on the time
(an abandoned cart, decaying engagement, a product page still open) are derived here, at read
time (signals.current_signals).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
import structlog
from redis.asyncio import Redis

from core import decision_index
from core.redis import Keys, anonymous_visitor, user_visitor
from core.resp import as_map
from segment_sync.config import SignalRules
from segment_sync.exceptions import ProfileErasureFailed
from segment_sync.profiles.profile import Profile
from segment_sync.profiles.signals import current_signals
from segment_sync.profiles.state import (
    AUDIENCE_TIMES_FIELD,
    HOT_FIELDS,
    ProfileState,
    decode_row,
    merge_into,
)
from segment_sync.stream.transactions import Session, failed, session

log = structlog.get_logger()

PROFILE_FIELDS = tuple(name.encode() for name in HOT_FIELDS)
DEFAULT_TTL_SECONDS = 30 * 24 * 3600
_ERASE_ATTEMPTS = 10


def visitor_key(keys: Keys, *, user_id: str | None = None, anonymous_id: str | None = None) -> str:
    if user_id:
        return keys.profile(user_visitor(user_id))
    if anonymous_id:
        return keys.profile(anonymous_visitor(anonymous_id))
    raise ValueError("a visitor needs a userId or an anonymousId")


class RedisProfileStore:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        tombstone_seconds: float = 7 * 24 * 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl = int(ttl_seconds)
        self._tombstone = int(tombstone_seconds)
        self.clock = clock

    # ------------------------------------------------------------ the hot path

    def profile_keys(self, user_id: str | None, anonymous_id: str | None) -> list[str]:
        """The hashes a read needs, anonymous first (the order `decode_rows` expects)."""
        names = []
        if anonymous_id:
            names.append(visitor_key(self._keys, anonymous_id=anonymous_id))
        if user_id:
            names.append(visitor_key(self._keys, user_id=user_id))
        return names

    def queue_read(self, pipe: Any, user_id: str | None, anonymous_id: str | None) -> int:
        """Queue the read on someone else's pipeline; returns how many replies it adds."""
        names = self.profile_keys(user_id, anonymous_id)
        for name in names:
            pipe.hmget(name, PROFILE_FIELDS)
        return len(names)

    def decode_rows(
        self, replies: Sequence[Any], user_id: str | None, anonymous_id: str | None
    ) -> Profile | None:
        """The profile from the replies `queue_read` asked for."""
        rows = [_row(reply) for reply in replies]
        anon = rows[0] if anonymous_id else None
        user = rows[-1] if user_id else None
        return profile_of(anon, user, user_id, self.clock())

    async def read(self, user_id: str | None, anonymous_id: str | None) -> Profile | None:
        names = self.profile_keys(user_id, anonymous_id)
        if not names:
            return None
        if len(names) == 1:
            replies = [await self._redis.hmget(names[0], PROFILE_FIELDS)]
        else:
            async with self._redis.pipeline(transaction=False) as pipe:
                self.queue_read(pipe, user_id, anonymous_id)
                replies = await pipe.execute()
        return self.decode_rows(replies, user_id, anonymous_id)

    # ------------------------------------------------------------ direct writes

    async def write(
        self,
        *,
        user_id: str | None = None,
        anonymous_id: str | None = None,
        traits: Mapping[str, Any] | None = None,
        audiences: set[str] | frozenset[str] | None = None,
        signals: Mapping[str, Any] | None = None,
        consent: bool | None = None,
        confirmed: Mapping[str, float] | None = None,
    ) -> None:
        """Replace the given parts of one visitor's profile (profile pulls, tests, benches).

        `confirmed`: audience key → when the CDP confirmed that membership (a Profile API
        pull); merged into `audAt` where it is newer than the change stored there.
        """
        key = visitor_key(self._keys, user_id=user_id, anonymous_id=anonymous_id)
        fields: dict[str, bytes] = {}
        if confirmed:
            fields[AUDIENCE_TIMES_FIELD] = await self._confirmed(key, confirmed)
        if traits is not None:
            fields["traits"] = orjson.dumps(dict(traits))
        if audiences is not None:
            fields["audiences"] = orjson.dumps(sorted(audiences))
        if signals is not None:
            fields["signals"] = orjson.dumps(dict(signals))
        if consent is not None:
            fields["consent"] = b"1" if consent else b"0"
        if fields:
            fields["rev"] = os.urandom(6).hex().encode()  # consumers see the profile changed
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
                pipe.expire(key, self._ttl)
                await pipe.execute()

    async def _confirmed(self, key: str, confirmed: Mapping[str, float]) -> bytes:
        """The stored `audAt` with these memberships confirmed, where that is newer."""
        raw = await self._redis.hget(key, AUDIENCE_TIMES_FIELD)
        raw_bytes = raw.encode() if isinstance(raw, str) else raw
        state = decode_row({AUDIENCE_TIMES_FIELD.encode(): raw_bytes} if raw_bytes else {})
        for audience, at in confirmed.items():
            state.change_audience(audience, True, at)
        times = {k: [int(member), at] for k, (member, at) in state.audience_times.items()}
        return orjson.dumps(times)

    # ------------------------------------------------------------ erasure

    async def erase(self, user_id: str) -> int:
        """Delete the user's merged profile, every linked id's keys and counters; leave
        tombstones so that events accepted before now are never applied. Returns the number
        of visitor ids erased (0 when nothing was known)."""
        for _ in range(_ERASE_ATTEMPTS):
            async with session(self._redis) as tx:
                erased = await self._erase_once(tx, user_visitor(user_id))
            if erased is not None:
                log.info("segment.profile.erased", ids=erased)
                return erased
        raise ProfileErasureFailed("the profile kept changing during the erasure; retry")

    async def _erase_once(self, tx: Session, vid: str) -> int | None:
        keys = self._keys
        _, row, now = await tx.roundtrip(
            [("WATCH", keys.profile(vid)), ("HGETALL", keys.profile(vid)), ("TIME",)]
        )
        state = decode_row(as_map(row))
        canonical = state.canonical or vid
        if canonical != vid:
            _, row = await tx.roundtrip(
                [("WATCH", keys.profile(canonical)), ("HGETALL", keys.profile(canonical))]
            )
            state = decode_row(as_map(row))
        ids = sorted({vid, canonical, *state.links})
        names = [key for v in ids for key in await self._visitor_keys(v)]
        # Read before the erasure deletes the visitor indexes with the rest of their keys.
        logged = await decision_index.visitor_members(self._redis, self._keys, ids)
        stamp = int(now[0]) * 1000 + int(now[1]) // 1000
        commands: list[Sequence[Any]] = [("MULTI",)]
        if names:
            commands.append(("DEL", *names))
        for v in ids:
            commands.append(("SET", keys.profile_erased(v), stamp, "EX", self._tombstone))
        commands.append(("EXEC",))
        replies = await tx.roundtrip(commands)
        if replies[-1] is None:
            return None
        error = failed(replies) or failed(replies[-1])
        if error is not None:
            raise error
        await self._forget_decisions(logged)
        return len(ids) if names else 0

    async def _forget_decisions(self, members: Sequence[str]) -> None:
        """Erase the visitor's logged decisions too: the records carry their profile facts."""
        await decision_index.forget(self._redis, self._keys, members)
        if members:
            log.info("segment.profile.decisions_erased", records=len(members))

    async def _visitor_keys(self, vid: str) -> list[str]:
        """Every key of one visitor id: ours and other packages' counters (one SCAN)."""
        found = {self._keys.profile(vid), self._keys.profile_seen(vid)}
        async for name in self._redis.scan_iter(match=self._keys.visitor_pattern(vid), count=1000):
            found.add(name.decode() if isinstance(name, bytes) else name)
        found.discard(self._keys.profile_erased(vid))
        return sorted(found)


# ---------------------------------------------------------------- decoding


def _row(reply: Any) -> dict[bytes, bytes]:
    if isinstance(reply, dict):
        return reply
    if not isinstance(reply, list):
        return {}
    return {
        name: value for name, value in zip(PROFILE_FIELDS, reply, strict=False) if value is not None
    }


def profile_of(
    anon: Mapping[bytes, bytes] | None,
    user: Mapping[bytes, bytes] | None,
    user_id: str | None,
    now: float,
) -> Profile | None:
    """One profile from the anonymous and the user row; a mirror of the user is not merged."""
    a = decode_row(anon) if anon else None
    u = decode_row(user) if user else None
    if a is None or u is None:
        state = a or u
    elif a.canonical is not None and a.canonical in (user_visitor(user_id or ""), u.canonical):
        state = u
    else:
        merge_into(u, a, SignalRules())
        state = u
    if state is None or state.empty:
        return None
    return _profile(state, now)


def _profile(state: ProfileState, now: float) -> Profile:
    return Profile(
        traits=state.traits,
        audiences=frozenset(state.audiences),
        signals=current_signals(state, now),
        consent=state.consent,
        audience_times=confirmed_times(state),
    )


def confirmed_times(state: ProfileState) -> dict[str, float]:
    """When each current membership was last confirmed (entered, re-sent, pulled)."""
    times = state.audience_times
    if not times:
        return {}
    return {key: at for key, (member, at) in times.items() if member and key in state.audiences}
