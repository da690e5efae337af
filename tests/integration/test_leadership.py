"""The sync leader lease: one holder among replicas, handed back at once on a clean stop."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from core.redis import Keys
from integration.leadership import SyncLeadership
from integration.store import SyncLock
from tests.support.waiting import eventually


def leadership(redis: Redis, keys: Keys, ttl: float = 3.0) -> SyncLeadership:
    return SyncLeadership(SyncLock(redis, keys.sync_leader, ttl_seconds=ttl))


async def test_only_one_of_several_replicas_leads(redis: Redis, keys: Keys) -> None:
    replicas = [leadership(redis, keys) for _ in range(3)]
    led = [await replica.lead() for replica in replicas]
    again = [await replica.lead() for replica in replicas]
    assert led == again == [True, False, False]
    assert await redis.get(keys.sync_leader) == replicas[0].owner.encode()


async def test_a_stopped_leader_hands_over_to_exactly_one_other(redis: Redis, keys: Keys) -> None:
    first, second, third = (leadership(redis, keys, ttl=1.5) for _ in range(3))
    leading = asyncio.create_task(first.keep())
    await eventually(lambda: _held(first))
    waiting = [asyncio.create_task(r.keep()) for r in (second, third)]
    await asyncio.sleep(0.6)  # both others tried at least once meanwhile
    assert (second.held, third.held) == (False, False)
    leading.cancel()
    await asyncio.gather(leading, return_exceptions=True)
    assert not first.held
    await eventually(lambda: _either(second, third), within=5)
    assert [second.held, third.held].count(True) == 1
    heir = second if second.held else third
    assert await redis.get(keys.sync_leader) == heir.owner.encode()
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    assert await redis.get(keys.sync_leader) is None, "released on the way out"


async def test_asking_twice_at_once_still_leads(redis: Redis, keys: Keys) -> None:
    replica = leadership(redis, keys)
    assert list(await asyncio.gather(replica.lead(), replica.lead())) == [True, True]
    assert replica.held


async def test_a_lease_taken_over_after_expiry_is_lost_by_the_old_holder(
    redis: Redis, keys: Keys
) -> None:
    old = leadership(redis, keys)
    assert await old.lead()
    await redis.delete(keys.sync_leader)  # as if it expired while the holder stalled
    new = leadership(redis, keys)
    assert await new.lead()
    assert not await old.lead(), "the renewal fails: someone else holds it"
    assert await new.lead()


async def _held(replica: SyncLeadership) -> bool:
    return replica.held


async def _either(*replicas: SyncLeadership) -> bool:
    return any(r.held for r in replicas)
