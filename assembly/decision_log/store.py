"""The decision log in Redis: a capped stream of records and two indexes into it.

- `<p>:decisions:log`: stream, one entry per record (field `r`, JSON), trimmed to about
  `DECISIONS_LOG_MAX_LEN` entries (`XADD MAXLEN ~`) and to `DECISIONS_LOG_MAX_AGE_SECONDS`
  (`XTRIM MINID ~`, by the entry ids' server time) with every batch;
- `<p>:decisions:log:ids`: sorted set, all at score 0, members `<decisionId>:<stream id>`:
  ids are time-ordered text, so `GET /admin/decisions/{id}` is one `ZRANGEBYLEX` and one
  `XRANGE`; trimmed by rank to the stream's length;
- `<p>:{v:<kind>:<id>}:decision_log`: per visitor (u: userId, a: anonymousId), the same
  members scored by decision time (ms), the newest `DECISIONS_LOG_VISITOR_MAX` kept, expiring
  after the log's age: "visitor X around 14:02" is one `ZRANGEBYSCORE` per id kind.

An index member whose stream entry is trimmed reads as "no longer logged".
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from core.redis import Keys

VISITOR_KINDS = ("u", "a")


@dataclass(frozen=True, slots=True)
class Entry:
    """A record ready to append: its id, decision time, visitor ids, encoded JSON."""

    id: str
    ms: int
    visitors: tuple[str, ...]  # `u:<userId>`, `a:<anonymousId>`
    body: bytes


@dataclass(frozen=True, slots=True)
class Limits:
    max_len: int
    max_age_seconds: int
    visitor_max: int


class DecisionLogStore:
    def __init__(self, redis: Redis, keys: Keys, limits: Limits) -> None:
        self._redis = redis
        self._keys = keys
        self.limits = limits

    async def append(self, entries: Sequence[Entry]) -> None:
        """Two pipelined round trips: the records (stream ids come back), then the indexes."""
        keys, limits = self._keys, self.limits
        async with self._redis.pipeline(transaction=False) as pipe:
            for entry in entries:
                pipe.xadd(
                    keys.decision_log, {"r": entry.body}, maxlen=limits.max_len, approximate=True
                )
            cutoff = int(time.time() - limits.max_age_seconds) * 1000
            pipe.xtrim(keys.decision_log, minid=f"{cutoff}-0", approximate=True)
            stream_ids = (await pipe.execute())[: len(entries)]
        async with self._redis.pipeline(transaction=False) as pipe:
            members = {}
            for entry, stream_id in zip(entries, stream_ids, strict=True):
                member = f"{entry.id}:{_text(stream_id)}"
                members[member] = 0
                for visitor in entry.visitors:
                    self._index_visitor(pipe, visitor, member, entry.ms)
            pipe.zadd(keys.decision_log_ids, members)
            pipe.zremrangebyrank(keys.decision_log_ids, 0, -limits.max_len - 1)
            await pipe.execute()

    def _index_visitor(self, pipe: Any, visitor: str, member: str, ms: int) -> None:
        key = self._keys.decision_log_visitor(visitor)
        pipe.zadd(key, {member: ms})
        pipe.zremrangebyrank(key, 0, -self.limits.visitor_max - 1)
        pipe.expire(key, self.limits.max_age_seconds)

    async def get(self, decision_id: str) -> dict[str, Any] | None:
        found = await self._redis.zrangebylex(
            self._keys.decision_log_ids, f"[{decision_id}:", f"[{decision_id};", start=0, num=1
        )
        if not found:
            return None
        records = await self._records([_text(found[0])])
        return records[0] if records else None

    async def around(self, visitor_id: str, start_ms: int, end_ms: int) -> tuple[list[Any], int]:
        """The records of a visitor (either id kind) between two times, oldest first, and
        how many the index still names but the stream no longer holds."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for kind in VISITOR_KINDS:
                key = self._keys.decision_log_visitor(f"{kind}:{visitor_id}")
                pipe.zrangebyscore(key, start_ms, end_ms, withscores=True)
            found = await pipe.execute()
        members = sorted({_text(m): s for rows in found for m, s in rows}.items(), key=_by_score)
        records = await self._records([m for m, _ in members])
        return records, len(members) - len(records)

    async def _records(self, members: list[str]) -> list[dict[str, Any]]:
        if not members:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for member in members:
                stream_id = member.split(":", 1)[1]
                pipe.xrange(self._keys.decision_log, stream_id, stream_id)
            found = await pipe.execute()
        return [orjson.loads(rows[0][1][b"r"]) for rows in found if rows]


def _by_score(item: tuple[str, float]) -> float:
    return item[1]


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
