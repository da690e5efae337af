"""Optimistic transactions with pipelined reads: WATCH, read many keys, MULTI … EXEC.

redis-py runs the reads between `WATCH` and `MULTI` one round trip each; a batch of events
touches hundreds of profiles, so this sends them all at once on one pooled connection. Replies
are raw (no response callbacks), RESP2 or RESP3 as the connection negotiated: `HGETALL` is a
flat list or a map (`core.resp.as_map`), `EXEC` a list, or None when a watched key changed.

On a Redis Cluster a transaction may only touch one hash slot. `SpreadSession` keeps the same
interface over one connection per slot: reads and `WATCH`es go to each key's master at once, and
`MULTI … EXEC` becomes one transaction per slot, those that record applied `messageId`s (`ZADD`)
last, so a redelivery after a half-committed exchange redoes the copies before the record.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection, Connection
from redis.exceptions import ResponseError

from core import cluster as clusters
from core.resp import pack_all

Command = Sequence[Any]
_RECORD = "ZADD"  # the write that records applied messageIds: its slot's transaction goes last


class Session(Protocol):
    """What a transaction needs: send commands in one write, read every reply."""

    async def roundtrip(self, commands: Sequence[Command]) -> list[Any]: ...

    async def unwatch(self) -> None: ...


class NodeSession:
    """One connection, taken from the client's pool for the length of a transaction."""

    def __init__(self, connection: AbstractConnection) -> None:
        self._connection = connection
        self._timeout: float | None = getattr(connection, "socket_timeout", None)
        self.watching = False

    async def roundtrip(self, commands: Sequence[Command]) -> list[Any]:
        """Send every command in one write and read every reply; error replies are returned.

        One deadline covers the whole exchange (the connection's socket timeout, at least 5 s)
        instead of one timer per reply: a batch has hundreds of replies.
        """
        conn = self._connection
        packed = pack_all(commands)
        replies: list[Any] = []
        async with asyncio.timeout(max(self._timeout or 0.0, 5.0)):
            await conn.send_packed_command(packed, check_health=False)
            for _ in commands:
                try:
                    replies.append(await conn.read_response(timeout=math.inf))
                except ResponseError as exc:
                    replies.append(exc)
        for command in commands:
            name = str(command[0]).upper()
            if name == "WATCH":
                self.watching = True
            elif name in ("EXEC", "UNWATCH", "DISCARD"):
                self.watching = False
        return replies

    async def unwatch(self) -> None:
        if self.watching:
            await self.roundtrip([("UNWATCH",)])


@asynccontextmanager
async def session(redis: Redis) -> AsyncIterator[Session]:
    """A `Session`; on any error its connection is dropped, so no WATCH or reply leaks."""
    cluster = clusters.cluster_of(redis)
    if cluster is not None:
        async with _spread(cluster) as spread:
            yield spread
        return
    pool = redis.connection_pool
    connection = await pool.get_connection()  # type: ignore[no-untyped-call]
    tx = NodeSession(connection)
    try:
        yield tx
        await tx.unwatch()
    except BaseException:
        await connection.disconnect()
        raise
    finally:
        await pool.release(connection)


@asynccontextmanager
async def _spread(cluster: RedisCluster) -> AsyncIterator[SpreadSession]:
    tx = SpreadSession(cluster)
    try:
        yield tx
        await tx.unwatch()
    except BaseException as exc:
        await tx.drop()
        if clusters.topology_error(exc):
            clusters.refresh_soon(cluster)
        raise
    finally:
        tx.release()


class SpreadSession:
    """A `Session` over a cluster: one connection (and one transaction) per hash slot."""

    def __init__(self, cluster: RedisCluster) -> None:
        self._cluster = cluster
        self._open: dict[int, tuple[ClusterNode, Connection, NodeSession]] = {}

    def _on(self, slot: int) -> NodeSession:
        if slot not in self._open:
            node = clusters.master_of(self._cluster, slot)
            connection = node.acquire_connection()
            self._open[slot] = (node, connection, NodeSession(connection))
        return self._open[slot][2]

    async def roundtrip(self, commands: Sequence[Command]) -> list[Any]:
        """The commands split by slot, each slot's sent in one write, every slot at once; the
        transactions that record applied `messageId`s in a second write, if the first held."""
        plan = _Plan()
        for command in commands:
            plan.add(command)
        replies = await self._send(plan.waves[0], 0)
        if plan.waves[1] and plan.held(replies):
            replies.update(await self._send(plan.waves[1], 1))
        return [build(replies) for build in plan.replies]

    async def _send(self, parts: dict[int, list[Command]], wave: int) -> _Replies:
        slots = list(parts)
        results = await asyncio.gather(*(self._on(slot).roundtrip(parts[slot]) for slot in slots))
        return {(wave, slot): result for slot, result in zip(slots, results, strict=True)}

    async def unwatch(self) -> None:
        for _, _, tx in self._open.values():
            await tx.unwatch()

    async def drop(self) -> None:
        for _, connection, _ in self._open.values():
            await connection.disconnect()

    def release(self) -> None:
        for node, connection, _ in self._open.values():
            node.release(connection)
        self._open.clear()


_Replies = dict[tuple[int, int], list[Any]]  # (wave, slot) → that slot's replies, in order
_Spot = tuple[int, int, int]  # wave, slot, position


class _Plan:
    """Where each command of an exchange goes, and how its reply is put back together.

    Wave 0 holds reads, WATCHes and the transactions of slots that record nothing; wave 1 the
    transactions of the slots that record applied `messageId`s. A reply builder reads
    `replies[wave, slot][position]` once both waves are back.
    """

    def __init__(self) -> None:
        self.waves: tuple[dict[int, list[Command]], dict[int, list[Command]]] = ({}, {})
        self.replies: list[Any] = []
        self._queued: dict[int, list[Command]] | None = None
        self._execs: list[_Spot] = []

    def _put(self, wave: int, slot: int, command: Command) -> _Spot:
        part = self.waves[wave].setdefault(slot, [])
        part.append(command)
        return wave, slot, len(part) - 1

    def add(self, command: Command) -> None:
        name = str(command[0]).upper()
        if name == "MULTI":
            self._queued = {}
            self.replies.append(lambda _: b"OK")
        elif name == "EXEC":
            self._exec()
        elif self._queued is not None:
            for slot, part in _by_slot(command).items():
                self._queued.setdefault(slot, []).append(part)
            self.replies.append(lambda _: b"QUEUED")
        elif name == "WAIT":  # each master the exchange wrote to waits for its replicas
            spots = [self._put(0, slot, command) for slot in list(self.waves[0])]
            spots += [self._put(1, slot, command) for slot in list(self.waves[1])]
            wanted = int(command[1])
            self.replies.append(lambda r, spots=spots, n=wanted: _fewest(r, spots, n))
        elif name in {"WATCH", "MGET", "DEL", "UNWATCH", "TIME"}:
            self._multi_key(name, command)
        else:
            at = self._put(0, clusters.slot(command[1]), command)
            self.replies.append(lambda r, at=at: _at(r, at))

    def _multi_key(self, name: str, command: Command) -> None:
        """A command naming keys in several slots: one per slot, the replies joined."""
        if name in {"UNWATCH", "TIME"}:  # no key: any slot already in this exchange will do
            at = self._put(0, next(iter(self.waves[0]), 0), command)
            self.replies.append(lambda r, at=at: _at(r, at))
            return
        keys = list(command[1:])
        spots = [
            (self._put(0, slot, (name, *slot_keys)), slot_keys)
            for slot, slot_keys in _keys_by_slot(keys).items()
        ]
        if name == "MGET":
            self.replies.append(lambda r, spots=spots, keys=keys: _joined(r, spots, keys))
        elif name == "DEL":
            self.replies.append(lambda r, spots=spots: sum(int(_at(r, at)) for at, _ in spots))
        else:
            self.replies.append(lambda _: b"OK")

    def _exec(self) -> None:
        queued, self._queued = self._queued or {}, None
        spots: list[_Spot] = []
        for slot, writes in queued.items():
            wave = 1 if any(str(w[0]).upper() == _RECORD for w in writes) else 0
            self._put(wave, slot, ("MULTI",))
            self.waves[wave][slot].extend(writes)
            spots.append(self._put(wave, slot, ("EXEC",)))
            if wave == 0:
                self._execs.append(spots[-1])
        self.replies.append(lambda r, spots=spots: _executed(r, spots))

    def held(self, replies: _Replies) -> bool:
        """Whether every transaction of wave 0 committed (none found a watched key changed)."""
        return all(_at(replies, at) is not None for at in self._execs)


def _fewest(replies: _Replies, spots: list[_Spot], wanted: int) -> int:
    """One WAIT reply: the fewest replicas any master reached; 0 if a wave was not sent, and
    `wanted` if the exchange wrote nothing (nothing to wait for)."""
    if not spots:
        return wanted
    sent = [int(_at(replies, at)) for at in spots if (at[0], at[1]) in replies]
    return min(sent) if len(sent) == len(spots) else 0


def _at(replies: _Replies, at: _Spot) -> Any:
    wave, slot, position = at
    return replies[wave, slot][position]


def _by_slot(command: Command) -> dict[int, Command]:
    """A queued write by slot: DEL/UNLINK may name keys in several, the others one key."""
    if str(command[0]).upper() in {"DEL", "UNLINK"}:
        return {
            slot: (command[0], *keys) for slot, keys in _keys_by_slot(list(command[1:])).items()
        }
    return {clusters.slot(command[1]): command}


def _keys_by_slot(keys: list[Any]) -> dict[int, list[Any]]:
    found: dict[int, list[Any]] = {}
    for key in keys:
        found.setdefault(clusters.slot(key), []).append(key)
    return found


def _joined(replies: _Replies, spots: list[tuple[_Spot, list[Any]]], keys: list[Any]) -> Any:
    """One MGET reply, in the order of `keys`, from the per-slot ones."""
    values: dict[Any, Any] = {}
    for at, slot_keys in spots:
        reply = _at(replies, at)
        if isinstance(reply, ResponseError):
            return reply
        values.update(zip(slot_keys, reply, strict=True))
    return [values[key] for key in keys]


def _executed(replies: _Replies, spots: list[_Spot]) -> list[Any] | None:
    """One EXEC reply from the per-slot ones: None when any slot's watched keys changed (or
    its transaction was not sent, because an earlier one found that)."""
    results: list[Any] = []
    for wave, slot, position in spots:
        reply = replies.get((wave, slot), [])[position] if (wave, slot) in replies else None
        if reply is None:
            return None
        results.extend(reply if isinstance(reply, list) else [reply])
    return results


def failed(replies: Iterable[Any]) -> ResponseError | None:
    for reply in replies:
        if isinstance(reply, ResponseError):
            return reply
    return None
