"""The published models in Redis: versioned artifacts, one pointer, one announcement channel.

- `<p>:model:seq`: counter, the next version number (`INCR`);
- `<p>:model:v:<version>`: the artifact bytes (docs/learning.md, "Artifact");
- `<p>:model:current`: the version every replica serves;
- `<p>:model:changed`: pub/sub channel, the new version announced on publish.

`publish` writes the artifact, moves the pointer and announces it in one transaction, then
deletes versions older than the newest `keep`. A replica that misses the announcement still
finds the pointer on its next poll.
"""

from __future__ import annotations

from redis.asyncio import Redis

from core.redis import Keys


class ModelStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def next_version(self) -> int:
        return int(await self.redis.incr(self.keys.model_seq))

    async def publish(self, version: int, artifact: bytes, *, keep: int) -> None:
        keys = self.keys
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.model_artifact(version), artifact)
            pipe.set(keys.model_current, version)
            await pipe.execute()
        await self.redis.publish(keys.model_channel, str(version))  # not queueable on a cluster
        stale = [
            keys.model_artifact(v) for v in range(max(1, version - keep - 20), version - keep + 1)
        ]
        if stale:
            await self.redis.delete(*stale)

    async def current(self) -> int | None:
        raw = await self.redis.get(self.keys.model_current)
        return int(raw) if raw is not None else None

    async def artifact(self, version: int) -> bytes | None:
        raw = await self.redis.get(self.keys.model_artifact(version))
        return raw.encode() if isinstance(raw, str) else raw

    async def point_to(self, version: int) -> None:
        """Serve an older (kept) version again: the rollback of a bad model."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.model_current, version)
            await pipe.execute()
        await self.redis.publish(self.keys.model_channel, str(version))
