"""The hot path's Redis read: several read commands in ONE round trip, as cheaply as possible.

A redis-py pipeline costs the client about twice the CPU of one command; each extra reply read
costs about as much as a small command. So when every key shares one hash tag (one visitor id:
profile and decision state live in the same cluster slot) the reads run as one `EVALSHA` of a
small read-only script that executes them and returns every reply; otherwise (two ids, or a
store without scripting, like the embedded one) they go out in one write on one connection and
the replies are read in order. Either way: one round trip, replies shaped as redis-py's
callbacks shape them (`HGETALL` → dict). Errors and cancels (the caller's time budget ran out)
drop the connection, so no reply is left unread on a connection that is used again.
The connections are the reader's own (`OneRoundTrip`), to skip the pool's per-command costs.
On a Redis Cluster each visitor's reads go to the master of its slot (`core.cluster`); two ids
in two slots are read from their two masters at once, so still one round trip of latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Sequence
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError

from core import cluster as clusters
from core.resp import as_map, pack, pack_all

log = structlog.get_logger()

SCRIPT = b"""
local out, a = {}, 2
for c = 1, tonumber(ARGV[1]) do
  local n = tonumber(ARGV[a + 1])
  out[c] = redis.call(ARGV[a], unpack(ARGV, a + 2, a + 1 + n))
  a = a + 2 + n
end
return out
"""
SHA = hashlib.sha1(SCRIPT).hexdigest()


class RawCommands:
    """The part of a redis-py pipeline that read helpers use, recording raw commands."""

    def __init__(self) -> None:
        self.commands: list[tuple[Any, ...]] = []
        self.keys: list[str] = []
        self.shapes: list[str] = []

    def hmget(self, name: str, keys: Sequence[Any], *args: Any) -> None:
        self._add(("HMGET", name, *keys, *args), name, "list")

    def hgetall(self, name: str) -> None:
        self._add(("HGETALL", name), name, "map")

    def get(self, name: str) -> None:
        self._add(("GET", name), name, "value")

    def _add(self, command: tuple[Any, ...], key: str, shape: str) -> None:
        self.commands.append(command)
        self.keys.append(key)
        self.shapes.append(shape)

    def one_slot(self) -> bool:
        """Every key carries the same hash tag (so a script may touch them all)."""
        tags = {_tag(key) for key in self.keys}
        return len(tags) == 1 and None not in tags

    def by_slot(self) -> dict[int, tuple[RawCommands, list[int]]]:
        """The commands split by the hash slot of their key, each with its positions."""
        parts: dict[int, tuple[RawCommands, list[int]]] = {}
        for index, (command, key, shape) in enumerate(
            zip(self.commands, self.keys, self.shapes, strict=True)
        ):
            part, positions = parts.setdefault(clusters.slot(key), (RawCommands(), []))
            part._add(command, key, shape)
            positions.append(index)
        return parts

    def script_args(self) -> list[Any]:
        args: list[Any] = [len(self.commands)]
        for name, *rest in self.commands:
            args.extend((name, len(rest), *rest))
        return args


def _tag(key: str) -> str | None:
    start = key.find("{")
    end = key.find("}", start + 1)
    return key[start + 1 : end] if start >= 0 and end > start + 1 else None


def _embedded(redis: Redis) -> bool:
    return type(redis).__module__.startswith("fakeredis")


class OneRoundTrip:
    """Runs read batches on connections of its own (made by the client's pool factory).

    redis-py's pool spends more client CPU per command than the round trip itself (a lock,
    a health probe, bookkeeping on take and release). A connection here is only ever put back
    after every reply was read, so it needs no probe; one that fails or is cancelled is
    dropped. A connection error on a reused connection (a restarted server closed it) drops
    the idle ones and sends the batch again on a new one; a timeout is never retried. At most
    `limit` connections are kept idle; `aclose` closes them.
    """

    def __init__(self, redis: Redis, *, limit: int = 64) -> None:
        self._redis = redis
        self._cluster = clusters.cluster_of(redis)
        self._idle: list[Any] = []  # single node; on a cluster, per master in `_idle_at`
        self._idle_at: dict[str, list[Any]] = {}
        self._limit = limit
        # Off for good once the store says it cannot run scripts. The embedded store (fakeredis)
        # can, but interprets Lua ~20x slower than it pipelines: it reads without scripting.
        self.scripting = not _embedded(redis)

    async def run(self, batch: RawCommands) -> list[Any]:
        if self._cluster is None:
            return await self._run_on(batch, self._idle, None)
        try:
            return await self._run_cluster(self._cluster, batch)
        except (RedisError, OSError) as exc:
            if clusters.topology_error(exc):  # a failover moved the slot: learn where to
                clusters.refresh_soon(self._cluster)
            raise

    async def _run_cluster(self, cluster: Any, batch: RawCommands) -> list[Any]:
        """Each slot's commands on its master, every master at once."""
        parts = batch.by_slot()
        runs = []
        for part, _ in parts.values():
            node = clusters.node_for(cluster, part.keys[0])
            runs.append(self._run_on(part, self._idle_at.setdefault(node.name, []), node))
        if len(runs) == 1:
            return await runs[0]
        results = await asyncio.gather(*runs)
        replies: list[Any] = [None] * len(batch.commands)
        for (_, positions), part_replies in zip(parts.values(), results, strict=True):
            for position, reply in zip(positions, part_replies, strict=True):
                replies[position] = reply
        return replies

    async def _run_on(self, batch: RawCommands, idle: list[Any], node: Any) -> list[Any]:
        reused = bool(idle)
        connection = idle.pop() if reused else self._new(node)
        try:
            replies = await self._on(connection, batch)
        except (RedisConnectionError, OSError):
            await _discard(connection)
            if not reused:
                raise
            # The server closed the idle connection (a restart): the command never reached
            # it, so it is sent again, once, on a new connection, inside the caller's budget.
            await _drop(idle)
            connection = self._new(node)
            try:
                replies = await self._on(connection, batch)
            except BaseException:
                await _discard(connection)
                raise
        except BaseException:
            # A timeout, or a cancel (the caller's budget ran out) mid-read: a reply may still
            # be on its way, and the next command on this connection would read it as its own.
            await _discard(connection)
            raise
        if len(idle) < self._limit:
            idle.append(connection)
        else:
            await connection.disconnect()
        return [_shape(reply, shape) for reply, shape in zip(replies, batch.shapes, strict=True)]

    @property
    def idle(self) -> int:
        """Connections kept for reuse (every one of them with no reply left unread)."""
        return len(self._idle) + sum(map(len, self._idle_at.values()))

    def _new(self, node: Any) -> Any:
        """A connection with the pool's settings but without its retry policy: a page view
        never retries a connect or a read, its budget decides (docs/operations.md)."""
        if node is not None and self._cluster is not None:
            connection = clusters.new_connection(node)
        else:
            connection = self._redis.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        connection.retry = Retry(NoBackoff(), 0)
        # No per-command socket timeout either: redis-py would wrap every send in
        # `asyncio.wait_for` (a new task) and every read in a timeout scope, ~10 us of a page
        # view's CPU. Every caller runs under its own deadline, which cancels the read and so
        # drops the connection (see `run`). Connecting keeps `socket_connect_timeout`.
        connection.socket_timeout = None
        return connection

    async def _on(self, connection: Any, batch: RawCommands) -> list[Any]:
        await connection.connect()  # a no-op once connected
        if self.scripting and batch.one_slot():
            return await self._scripted(connection, batch)
        return await _pipelined(connection, batch.commands)

    async def aclose(self) -> None:
        await _drop(self._idle)
        for idle in self._idle_at.values():
            await _drop(idle)

    async def _scripted(self, connection: Any, batch: RawCommands) -> list[Any]:
        keys, args = batch.keys, batch.script_args()
        try:
            return list(await _call(connection, ("EVALSHA", SHA, len(keys), *keys, *args)))
        except ResponseError as exc:
            if isinstance(exc, NoScriptError):
                return list(await _call(connection, ("EVAL", SCRIPT, len(keys), *keys, *args)))
            if "unknown command" not in str(exc):
                raise
        self.scripting = False
        log.info("assembly.read_path.no_scripting", detail="reads go out as one pipelined write")
        return await _pipelined(connection, batch.commands)


async def _drop(idle: list[Any]) -> None:
    """Close and forget the idle connections of one list."""
    connections = list(idle)
    idle.clear()
    for connection in connections:
        await connection.disconnect()


async def _discard(connection: Any) -> None:
    """Close a connection that must never be reused, without waiting on a hung server."""
    with contextlib.suppress(RedisError, OSError):
        await connection.disconnect(nowait=True)


async def _call(connection: Any, command: tuple[Any, ...]) -> Any:
    await connection.send_packed_command(pack(*command), check_health=False)
    return await connection.read_response()


async def _pipelined(connection: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
    await connection.send_packed_command(pack_all(commands), check_health=False)
    return [await connection.read_response() for _ in commands]


def _shape(reply: Any, shape: str) -> Any:
    if shape == "map" and isinstance(reply, list):  # RESP2: a flat list of names and values
        return as_map(reply)
    return reply
