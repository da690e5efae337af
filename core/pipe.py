"""One Redis connection shared by every hot-path read in flight (auto-pipelining).

Each read hands over its packed commands and awaits a future. The reads queued in one turn of
the event loop go out as one write (`call_soon`), and one reader task takes the replies in
order and hands each caller its own. Under load a turn of the loop starts several page views,
so their reads share a write and the replies a wake-up: fewer system calls and fewer
coroutine hops than a connection per read (ioredis calls this auto-pipelining).

Failure semantics, per caller:
- a caller cancelled mid-read (its time budget ran out) leaves its future; the reply, when it
  comes, is read and dropped, so no reply is ever handed to the wrong caller;
- an error reply (`ResponseError`) fails only its own caller, after all its replies are read;
- a connection error fails every read in flight on the pipe, and the pipe is `broken`;
- a pipe whose reads wait without a reply, or whose connection's handshake does not end, for
  `stale_seconds` (a hung or partitioned server) is `stale`: its owner replaces it, and
  closing it fails what it held.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError


class _Wait:
    """One caller's read: how many replies it expects, those read so far, its future."""

    __slots__ = ("count", "future", "replies")

    def __init__(self, future: asyncio.Future[list[Any]], count: int) -> None:
        self.future = future
        self.count = count
        self.replies: list[Any] = []


class Pipe:
    def __init__(self, connection: Any, *, stale_seconds: float) -> None:
        self.connection = connection
        self._loop = asyncio.get_running_loop()
        self._stale_seconds = stale_seconds
        self._outbox: list[bytes] = []
        self._queued: list[_Wait] = []  # handed over, not written yet
        self._in_flight: deque[_Wait] = deque()  # written, replies not all read
        # When the reads waiting last saw progress: a reply, their write, or (connecting) the
        # pipe's creation.
        self._progress_at = self._loop.time()
        self._flush_due = False
        self._ready = False
        self.broken = False
        self.answered = False  # a reply has come on it (a connection that was working)
        self._reader = self._loop.create_task(self._read())

    def call(self, packed: bytes, count: int) -> asyncio.Future[list[Any]]:
        """Queue one read of `count` commands; the future gets its `count` replies."""
        wait = _Wait(self._loop.create_future(), count)
        if self.broken:
            wait.future.set_exception(RedisConnectionError("the connection is closed"))
            return wait.future
        self._outbox.append(packed)
        self._queued.append(wait)
        if self._ready and not self._flush_due:
            self._flush_due = True
            self._loop.call_soon(self._flush)
        return wait.future

    @property
    def in_flight(self) -> int:
        """Reads handed over and not answered yet (cancelled ones included)."""
        return len(self._in_flight) + len(self._queued)

    def stale(self) -> bool:
        """Reads wait and nothing moved for `stale_seconds`: no reply to the reads in flight,
        or, still connecting, no end to the connection's handshake (a hung server accepts
        the connection, then never answers its first command)."""
        waiting = self._in_flight if self._ready else self._queued
        return bool(waiting) and self._loop.time() - self._progress_at > self._stale_seconds

    def _flush(self) -> None:
        self._flush_due = False
        if self.broken or not self._outbox:
            return
        data = self._outbox[0] if len(self._outbox) == 1 else b"".join(self._outbox)
        self._outbox = []
        if not self._in_flight:
            self._progress_at = self._loop.time()
        self._in_flight.extend(self._queued)
        self._queued = []
        try:
            self.connection._writer.writelines((data,))  # buffered; the loop sends it
        except (RuntimeError, OSError, AttributeError) as exc:  # closed under us
            self._fail(RedisConnectionError(f"writing to the store failed: {exc!r}"))
            self._reader.cancel()  # which closes the connection

    async def _read(self) -> None:
        try:
            await self.connection.connect()
            self._ready = True
            self._flush()
            while True:
                try:
                    reply = await self.connection.read_response()
                except ResponseError as exc:
                    reply = exc
                self._deliver(reply)
        except Exception as exc:  # whatever ended the reader fails what it held: none hangs
            self._fail(exc if isinstance(exc, RedisConnectionError) else _lost(exc))
        except asyncio.CancelledError:
            self._fail(RedisConnectionError("the connection was closed"))
            raise
        finally:
            with contextlib.suppress(RedisError, OSError):
                await self.connection.disconnect(nowait=True)

    def _deliver(self, reply: Any) -> None:
        if not self._in_flight:
            raise RedisConnectionError("the store sent a reply nobody asked for")
        self._progress_at = self._loop.time()
        self.answered = True
        wait = self._in_flight[0]
        wait.replies.append(reply)
        if len(wait.replies) < wait.count:
            return
        self._in_flight.popleft()
        if wait.future.done():  # its caller gave up: the reply is dropped
            return
        error = next((r for r in wait.replies if isinstance(r, ResponseError)), None)
        if error is not None:
            wait.future.set_exception(error)
        else:
            wait.future.set_result(wait.replies)

    def _fail(self, error: BaseException) -> None:
        """Fail every read held, for good (the reader closes the connection as it ends)."""
        self.broken = True
        waits = [*self._in_flight, *self._queued]
        self._in_flight.clear()
        self._queued = []
        self._outbox = []
        for wait in waits:
            if not wait.future.done():
                wait.future.set_exception(error)

    async def aclose(self) -> None:
        """Stop reading and close the connection (what is in flight fails)."""
        self._reader.cancel()
        await asyncio.wait((self._reader,))


def _lost(exc: BaseException) -> RedisConnectionError:
    return RedisConnectionError(f"the store connection failed: {exc!r}")
