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

An index member whose stream entry is trimmed reads as "no longer logged". The member format is
shared with erasure, which forgets a visitor's records from below this package
(`core.decision_index`).

On a Redis Cluster a script touches one hash slot: the stream and the ids index share one
(`Keys`), and the visitor indexes, each in its visitor's slot, are written by a pipeline after
the script has returned the members it appended (a crash in between leaves those records
findable by id, not by visitor).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from core.cluster import cluster_of
from core.decision_index import stream_id_of
from core.redis import Keys, anonymous_visitor, user_visitor
from core.resp import text

VISITOR_KINDS = (user_visitor, anonymous_visitor)  # a visitor id names either kind

# KEYS: the stream, the ids index, then every visitor index the batch touches (none on a
# cluster: the script then returns the members it appended, for the caller to index).
# ARGV: max length, oldest stream id kept, per-visitor cap, index lifetime (s), then one
# argument per record: `<decision id> <decision ms> <positions in KEYS, comma-separated>`, a
# newline, the JSON body (orjson never writes a raw newline). One argument a record, not four
# or more: the client packs each argument in Python, on the serving core.
APPEND = """
local stream, ids = KEYS[1], KEYS[2]
local max_len, visitor_max = tonumber(ARGV[1]), tonumber(ARGV[3])
local touched, members = {}, {}
for a = 5, #ARGV do
  local record = ARGV[a]
  local cut = string.find(record, '\\n', 1, true)
  local id, ms, visitors = string.match(string.sub(record, 1, cut - 1), '^(%S+) (%d+) ?(.*)$')
  local body = string.sub(record, cut + 1)
  local sid = redis.call('XADD', stream, 'MAXLEN', '~', max_len, '*', 'r', body)
  local member = id .. ':' .. sid
  members[#members + 1] = member
  redis.call('ZADD', ids, 0, member)
  for position in string.gmatch(visitors, '%d+') do
    local key = KEYS[tonumber(position)]
    redis.call('ZADD', key, ms, member)
    touched[key] = true
  end
end
for key in pairs(touched) do
  redis.call('ZREMRANGEBYRANK', key, 0, -visitor_max - 1)
  redis.call('EXPIRE', key, ARGV[4])
end
redis.call('XTRIM', stream, 'MINID', '~', ARGV[2])
redis.call('ZREMRANGEBYRANK', ids, 0, -max_len - 1)
if #KEYS == 2 then return members end
return #members
"""


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
        self._append = redis.register_script(APPEND)
        self._cluster = cluster_of(redis) is not None

    async def append(self, entries: Sequence[Entry]) -> None:
        """One round trip: a script appends the records and indexes each under its stream id.

        The client packs one command per batch (no per-record commands or replies to parse):
        this runs on the serving core, so its cost is taken from page views.
        """
        if self._cluster:
            await self._append_spread(entries)
            return
        keys = self._keys
        visitor_keys: dict[str, int] = {}
        args = self._head()
        for entry in entries:
            positions = [
                visitor_keys.setdefault(keys.decision_log_visitor(visitor), len(visitor_keys) + 3)
                for visitor in entry.visitors
            ]
            args.append(_record(entry, ",".join(map(str, positions))))
        await self._append(
            keys=[keys.decision_log, keys.decision_log_ids, *visitor_keys], args=args
        )

    def _head(self) -> list[Any]:
        """The script's first arguments: max length, oldest id kept, visitor cap, lifetime."""
        limits = self.limits
        oldest = f"{int(time.time() - limits.max_age_seconds) * 1000}-0"
        return [limits.max_len, oldest, limits.visitor_max, limits.max_age_seconds]

    async def _append_spread(self, entries: Sequence[Entry]) -> None:
        """On a cluster: the script appends to the stream and the ids index (one slot), then
        one pipeline indexes each record under its visitors (each in its own slot)."""
        keys, limits = self._keys, self.limits
        args = self._head()
        for entry in entries:
            args.append(_record(entry, ""))
        members = await self._append(keys=[keys.decision_log, keys.decision_log_ids], args=args)
        by_visitor: dict[str, dict[Any, int]] = {}
        for entry, member in zip(entries, members, strict=True):
            for visitor in entry.visitors:
                by_visitor.setdefault(keys.decision_log_visitor(visitor), {})[member] = entry.ms
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, scored in by_visitor.items():
                pipe.zadd(key, scored)
                pipe.zremrangebyrank(key, 0, -limits.visitor_max - 1)
                pipe.expire(key, limits.max_age_seconds)
            await pipe.execute()

    async def get(self, decision_id: str) -> dict[str, Any] | None:
        found = await self._redis.zrangebylex(
            self._keys.decision_log_ids, f"[{decision_id}:", f"[{decision_id};", start=0, num=1
        )
        if not found:
            return None
        records = await self._records([text(found[0])])
        return records[0] if records else None

    async def around(self, visitor_id: str, start_ms: int, end_ms: int) -> tuple[list[Any], int]:
        """The records of a visitor (either id kind) between two times, oldest first, and
        how many the index still names but the stream no longer holds."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for kind in VISITOR_KINDS:
                key = self._keys.decision_log_visitor(kind(visitor_id))
                pipe.zrangebyscore(key, start_ms, end_ms, withscores=True)
            found = await pipe.execute()
        members = sorted({text(m): s for rows in found for m, s in rows}.items(), key=_by_score)
        records = await self._records([m for m, _ in members])
        return records, len(members) - len(records)

    async def _records(self, members: list[str]) -> list[dict[str, Any]]:
        if not members:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for member in members:
                stream_id = stream_id_of(member)
                pipe.xrange(self._keys.decision_log, stream_id, stream_id)
            found = await pipe.execute()
        return [orjson.loads(rows[0][1][b"r"]) for rows in found if rows]


def _record(entry: Entry, positions: str) -> bytes:
    """One record as the script's argument: its head line, then its JSON body."""
    return f"{entry.id} {entry.ms} {positions}\n".encode() + entry.body


def _by_score(item: tuple[str, float]) -> float:
    return item[1]
