"""Redis Cluster helpers for the few places that talk to Redis below redis-py's command API.

`core.redis.connect` returns a `redis.asyncio.cluster.RedisCluster` when `REDIS_CLUSTER=true`;
it offers the same commands as `Redis` (so it is passed around typed as `Redis`), but it has no
single connection pool. The hot read path (`core/roundtrip.py`) and the event consumer's
transactions (`segment_sync/stream/transactions.py`) use raw connections: they ask here for one
to the master that serves a key's slot, and for a refresh of the slot map after a failover (a
`MOVED` reply, a refused connection). See docs/operations.md "Redis Cluster".
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, ClusterPubSub, RedisCluster
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError, ResponseError

log = structlog.get_logger()

_REFRESHES: dict[int, asyncio.Task[None]] = {}
_TOPOLOGY_ERRORS = ("MOVED", "ASK", "CLUSTERDOWN", "TRYAGAIN", "READONLY")


class Cluster(RedisCluster):
    """redis-py's cluster client, whose pub/sub first learns the slot map if the client has
    not yet (redis-py's would look the channel's slot up in an empty map and fail)."""

    def pubsub(
        self,
        node: ClusterNode | None = None,
        host: str | None = None,
        port: int | None = None,
        **kwargs: Any,
    ) -> ClusterPubSub:
        return _PubSub(self, node=node, host=host, port=port, **kwargs)


class _PubSub(ClusterPubSub):
    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if self.connection is None:
            await self.cluster.initialize()
        return await super().execute_command(*args, **kwargs)


def cluster_of(redis: Redis) -> RedisCluster | None:
    """The cluster client behind `redis`, or None for a single node (or the embedded store)."""
    client: Any = redis
    return client if isinstance(client, RedisCluster) else None


def slot(key: str | bytes) -> int:
    """The hash slot of a key (its hash tag's, when it has one)."""
    return key_slot(key.encode() if isinstance(key, str) else key)


def node_for(cluster: RedisCluster, key: str | bytes) -> ClusterNode:
    """The master serving `key`'s slot, by the client's current slot map."""
    return master_of(cluster, slot(key))


def master_of(cluster: RedisCluster, at: int) -> ClusterNode:
    """The master serving slot `at`; a slot the map does not cover (mid-failover) is a
    connection error, as every caller already handles it."""
    try:
        return cluster.nodes_manager.get_node_from_slot(at)
    except RedisClusterException as exc:
        refresh_soon(cluster)
        raise RedisConnectionError(f"slot {at} has no master yet: {exc}") from exc


def new_connection(node: ClusterNode) -> Any:
    """A connection of our own to `node`, with the client's settings (not from its pool)."""
    return node.connection_class(**node.connection_kwargs)


def topology_error(exc: BaseException) -> bool:
    """Whether an error means the slot map moved (failover, resharding) or a node is gone."""
    if isinstance(exc, RedisConnectionError | OSError):
        return True
    return isinstance(exc, ResponseError) and str(exc).startswith(_TOPOLOGY_ERRORS)


def refresh_soon(cluster: RedisCluster) -> None:
    """Reload the slot map in the background, once at a time per client."""
    running = _REFRESHES.get(id(cluster))
    if running is not None and not running.done():
        return
    task = asyncio.get_running_loop().create_task(_refresh(cluster))
    _REFRESHES[id(cluster)] = task


async def _refresh(cluster: RedisCluster) -> None:
    try:
        await cluster.nodes_manager.initialize()
    except (RedisError, OSError) as exc:
        log.warning("store.cluster.refresh_failed", error=type(exc).__name__, detail=str(exc))
        await asyncio.sleep(0.2)  # the next error asks again, not before this
    else:
        log.info("store.cluster.refreshed", nodes=len(cluster.get_nodes()))
