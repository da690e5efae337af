"""Optimistic transactions with pipelined reads: WATCH, read many keys, MULTI … EXEC.

redis-py runs the reads between `WATCH` and `MULTI` one round trip each; a batch of events
touches hundreds of profiles, so this sends them all at once on one pooled connection. Replies
are raw (no response callbacks), RESP2 or RESP3 as the connection negotiated: `HGETALL` is a
flat list or a map (see `pairs`), `EXEC` a list, or None when a watched key changed.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ResponseError

from core.resp import pack_all

Command = Sequence[Any]


class Session:
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
    pool = redis.connection_pool
    connection = await pool.get_connection()  # type: ignore[no-untyped-call]
    tx = Session(connection)
    try:
        yield tx
        await tx.unwatch()
    except BaseException:
        await connection.disconnect()
        raise
    finally:
        await pool.release(connection)


def pairs(reply: Any) -> dict[bytes, bytes]:
    """A raw `HGETALL` reply as a dict (a RESP3 map already is one, RESP2 is a flat list)."""
    if isinstance(reply, dict):
        return reply
    if not isinstance(reply, list):
        return {}
    return {reply[i]: reply[i + 1] for i in range(0, len(reply), 2)}


def failed(replies: Iterable[Any]) -> ResponseError | None:
    for reply in replies:
        if isinstance(reply, ResponseError):
            return reply
    return None
