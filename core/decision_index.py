"""The decision log's indexes, for the two packages that touch them: the log itself
(`assembly.decision_log.store`, which writes and reads records) and erasure
(`segment_sync.profiles.store`, which must forget a visitor's records and sits below assembly).

A record is an entry of the stream `Keys.decision_log`; each index member names it as
`<decisionId>:<stream id>` (decision ids hold no colon), in `Keys.decision_log_ids` (every
record) and in `Keys.decision_log_visitor(<u:id | a:id>)` (a visitor's records).
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis

from core.redis import Keys
from core.resp import text


def stream_id_of(member: str) -> str:
    """The stream entry an index member names."""
    return member.split(":", 1)[1]


async def visitor_members(redis: Redis, keys: Keys, visitor_ids: Sequence[str]) -> list[str]:
    """Every index member of these visitor ids (`u:…`, `a:…`): one round trip."""
    if not visitor_ids:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for visitor in visitor_ids:
            pipe.zrange(keys.decision_log_visitor(visitor), 0, -1)
        found = await pipe.execute()
    return [text(member) for members in found for member in members]


async def forget(redis: Redis, keys: Keys, members: Sequence[str]) -> None:
    """Delete the records these members name, and their entries in the ids index (a visitor
    index goes with the visitor's other keys)."""
    if not members:
        return
    async with redis.pipeline(transaction=False) as pipe:
        pipe.xdel(keys.decision_log, *[stream_id_of(m) for m in members])
        pipe.zrem(keys.decision_log_ids, *members)
        await pipe.execute()
