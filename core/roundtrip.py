"""The hot path's Redis read: several read commands in ONE round trip, as cheaply as possible.

A redis-py pipeline costs the client about twice the CPU of one command; each extra reply read
costs about as much as a small command. So when every key shares one hash tag (one visitor id:
profile and decision state live in the same cluster slot) the reads run as one `EVALSHA` of a
small read-only script that executes them and returns every reply; otherwise (two ids, or a
store without scripting, like the embedded one) they go out in one write on one connection and
the replies are read in order. Either way: one round trip, replies shaped as redis-py's
callbacks shape them (`HGETALL` → dict). The reads share one connection per server
(`core.pipe`): the reads of one loop turn go out in one write, each caller gets its own
replies, and a cancelled caller's (its time budget ran out) are read and dropped.
On a Redis Cluster each visitor's reads go to the master of its slot (`core.cluster`); two ids
in two slots are read from their two masters at once, so still one round trip of latency.
"""

from __future__ import annotations

import asyncio
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
from core.pipe import Pipe
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
    """Runs read batches on pipes of its own (`core.pipe`: one connection per server, shared by
    every read in flight, made by the client's pool factory).

    redis-py's pool spends more client CPU per command than the round trip itself (a lock,
    a health probe, bookkeeping on take and release), and a connection per read costs a write
    and a wake-up each. A pipe writes the reads of one loop turn at once and hands each reply
    to its own caller, so a cancelled read (its budget ran out) never leaves a reply to
    another. A connection error on a pipe that had served reads (a restarted server closed
    it) sends the batch again, once, on a new pipe; a timeout is never retried. A pipe with
    no reply for `stale_seconds` while reads wait is replaced. `aclose` closes them.
    """

    def __init__(self, redis: Redis, *, stale_seconds: float = 1.0) -> None:
        self._redis = redis
        self._cluster = clusters.cluster_of(redis)
        self._pipes: dict[str | None, Pipe] = {}  # by master name on a cluster, else None
        self._stale_seconds = stale_seconds
        self._closing: set[asyncio.Task[None]] = set()  # replaced pipes being closed
        # Off for good once the store says it cannot run scripts. The embedded store (fakeredis)
        # can, but interprets Lua ~20x slower than it pipelines: it reads without scripting.
        self.scripting = not _embedded(redis)

    async def run(self, batch: RawCommands) -> list[Any]:
        if self._cluster is None:
            return await self._run_on(batch, None)
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
            runs.append(self._run_on(part, clusters.node_for(cluster, part.keys[0])))
        if len(runs) == 1:
            return await runs[0]
        results = await asyncio.gather(*runs)
        replies: list[Any] = [None] * len(batch.commands)
        for (_, positions), part_replies in zip(parts.values(), results, strict=True):
            for position, reply in zip(positions, part_replies, strict=True):
                replies[position] = reply
        return replies

    async def _run_on(self, batch: RawCommands, node: Any) -> list[Any]:
        pipe = self._pipe(node)
        was_working = pipe.answered
        try:
            replies = await self._on(pipe, batch)
        except (RedisConnectionError, OSError):
            if not was_working:
                raise
            # The server closed a connection that had been answering (a restart) before this
            # read reached it: sent again, once, on a new pipe, inside the caller's budget.
            replies = await self._on(self._pipe(node), batch)
        return [_shape(reply, shape) for reply, shape in zip(replies, batch.shapes, strict=True)]

    def _pipe(self, node: Any) -> Pipe:
        """The live pipe to `node` (None: the single server); a broken or stale one replaced."""
        name = _name(node)
        pipe = self._pipes.get(name)
        if pipe is not None and not pipe.broken and not pipe.stale():
            return pipe
        if pipe is not None:
            closing = asyncio.get_running_loop().create_task(pipe.aclose())
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
        pipe = self._pipes[name] = Pipe(self._new(node), stale_seconds=self._stale_seconds)
        return pipe

    @property
    def connections(self) -> int:
        """Pipes open now (one per server read from)."""
        return sum(1 for pipe in self._pipes.values() if not pipe.broken)

    @property
    def in_flight(self) -> int:
        """Reads handed to a pipe and not answered yet (cancelled ones included)."""
        return sum(pipe.in_flight for pipe in self._pipes.values())

    def _new(self, node: Any) -> Any:
        """A connection with the pool's settings but without its retry policy: a page view
        never retries a connect or a read, its budget decides (docs/operations.md)."""
        if node is not None and self._cluster is not None:
            connection = clusters.new_connection(node)
        else:
            connection = self._redis.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        connection.retry = Retry(NoBackoff(), 0)
        # No socket timeout on reads: the pipe's reader waits for replies for as long as
        # reads are in flight; every caller runs under its own deadline, and a pipe without
        # replies is replaced (`stale_seconds`). Connecting keeps `socket_connect_timeout`.
        connection.socket_timeout = None
        return connection

    async def _on(self, pipe: Pipe, batch: RawCommands) -> list[Any]:
        if self.scripting and batch.one_slot():
            return await self._scripted(pipe, batch)
        return await pipe.call(pack_all(batch.commands), len(batch.commands))

    async def aclose(self) -> None:
        pipes = list(self._pipes.values())
        self._pipes.clear()
        for pipe in pipes:
            await pipe.aclose()
        if self._closing:
            await asyncio.wait(self._closing)

    async def _scripted(self, pipe: Pipe, batch: RawCommands) -> list[Any]:
        keys, args = batch.keys, batch.script_args()
        try:
            [reply] = await pipe.call(pack("EVALSHA", SHA, len(keys), *keys, *args), 1)
            return list(reply)
        except ResponseError as exc:
            if isinstance(exc, NoScriptError):
                [reply] = await pipe.call(pack("EVAL", SCRIPT, len(keys), *keys, *args), 1)
                return list(reply)
            if "unknown command" not in str(exc):
                raise
        self.scripting = False
        log.info("assembly.read_path.no_scripting", detail="reads go out as one pipelined write")
        return await pipe.call(pack_all(batch.commands), len(batch.commands))


def _name(node: Any) -> str | None:
    return None if node is None else str(node.name)


def _shape(reply: Any, shape: str) -> Any:
    if shape == "map" and isinstance(reply, list):  # RESP2: a flat list of names and values
        return as_map(reply)
    return reply
