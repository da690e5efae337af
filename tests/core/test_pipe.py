"""The shared read connection (`core.pipe` under `core.roundtrip.OneRoundTrip`), against a real
redis-server: under bursts, cancels, error replies, a hung server and a killed one, every read
gets its own replies or an error, never another read's."""

from __future__ import annotations

import asyncio
import random
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from core.roundtrip import OneRoundTrip, RawCommands
from tests.assembly.faults import pause, private_redis, resume
from tests.support.redis_server import RedisServer

VISITORS = 400


def visitor_read(n: int) -> RawCommands:
    """A page view's read of one visitor (one hash slot: runs as the script)."""
    commands = RawCommands()
    commands.get(f"p:{{v:u:{n}}}:name")
    commands.hgetall(f"p:{{v:u:{n}}}:decisions")
    return commands


def two_visitor_read(n: int) -> RawCommands:
    """Reads of two ids in two slots (pipelined, two replies per read)."""
    commands = RawCommands()
    commands.get(f"p:{{v:u:{n}}}:name")
    commands.get(f"p:{{v:a:{n}}}:name")
    return commands


async def seed(redis: Redis) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        for n in range(VISITORS):
            pipe.set(f"p:{{v:u:{n}}}:name", f"user-{n}")
            pipe.hset(f"p:{{v:u:{n}}}:decisions", "a:exp", str(n))
            pipe.set(f"p:{{v:a:{n}}}:name", f"anon-{n}")
        await pipe.execute()


@asynccontextmanager
async def seeded(**options: float) -> AsyncIterator[tuple[RedisServer, Redis, OneRoundTrip]]:
    """A private redis-server holding every visitor, a client, and the reads under test."""
    with private_redis() as server:
        redis = Redis.from_url(server.url)
        await seed(redis)
        reads = OneRoundTrip(redis, **options)
        try:
            yield server, redis, reads
        finally:
            await reads.aclose()
            await redis.aclose()


async def gives_up(reads: OneRoundTrip, n: int) -> None:
    """A read of visitor `n` whose caller's budget (50 ms) runs out."""
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await reads.run(visitor_read(n))


async def once_stale(reads: OneRoundTrip, n: int) -> asyncio.Task[list[Any]]:
    """A read of visitor `n` started after the pipe had no progress for longer than its
    `stale_seconds` (0.2 s), so on a new connection; given 50 ms to be written."""
    await asyncio.sleep(0.3)
    late = asyncio.create_task(reads.run(visitor_read(n)))
    await asyncio.sleep(0.05)
    return late


def expected(n: int) -> list[object]:
    return [f"user-{n}".encode(), {b"a:exp": str(n).encode()}]


async def test_a_burst_of_reads_each_gets_its_own_replies_on_one_connection() -> None:
    async with seeded() as (_, _, reads):
        order = random.Random(7).sample(range(VISITORS), VISITORS)
        scripted = await asyncio.gather(*(reads.run(visitor_read(n)) for n in order))
        piped = await asyncio.gather(*(reads.run(two_visitor_read(n)) for n in order))
        assert scripted == [expected(n) for n in order]
        assert piped == [[f"user-{n}".encode(), f"anon-{n}".encode()] for n in order]
        assert reads.connections == 1
        assert reads.in_flight == 0


async def test_cancelled_reads_in_a_burst_never_hand_their_replies_to_others() -> None:
    async with seeded() as (_, _, reads):
        tasks = [asyncio.create_task(reads.run(visitor_read(n))) for n in range(VISITORS)]
        await asyncio.sleep(0)  # every read is queued; the write goes out on this turn
        cancelled = set(random.Random(3).sample(range(VISITORS), VISITORS // 2))
        for n in cancelled:
            tasks[n].cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        for n, result in enumerate(done):
            if n in cancelled:
                assert isinstance(result, asyncio.CancelledError)
            else:
                assert result == expected(n)
        # and the next reads, after the dropped replies, are exact too
        assert await asyncio.gather(*(reads.run(visitor_read(n)) for n in range(20))) == [
            expected(n) for n in range(20)
        ]
        assert reads.in_flight == 0


async def test_an_error_reply_fails_only_its_own_read() -> None:
    async with seeded() as (_, redis, reads):
        await redis.set("p:{v:u:bad}:decisions", "a string, not a hash")
        bad = RawCommands()
        bad.hgetall("p:{v:u:bad}:decisions")
        bad.get("p:{v:a:bad}:name")  # a second slot: pipelined, the error is one of two replies
        runs = [reads.run(visitor_read(n)) for n in range(50)]
        results = await asyncio.gather(
            *runs[:25], reads.run(bad), *runs[25:], return_exceptions=True
        )
        assert isinstance(results[25], ResponseError)
        assert "WRONGTYPE" in str(results[25])
        assert [r for i, r in enumerate(results) if i != 25] == [expected(n) for n in range(50)]
        assert await reads.run(visitor_read(7)) == expected(7)


@pytest.mark.parametrize("answered", [True, False], ids=["after-replies", "in-its-handshake"])
async def test_a_hung_server_gets_a_new_connection_once_the_pipe_is_stale(answered: bool) -> None:
    """A connection that had been answering, or one opened during the hang (a hung server
    accepts it, then never answers its handshake), is replaced once stale."""
    async with seeded(stale_seconds=0.2) as (server, _, reads):
        if answered:
            assert await reads.run(visitor_read(1)) == expected(1)
        pause(server)
        await gives_up(reads, 2)
        late = await once_stale(reads, 3)
        assert reads.in_flight == 1, "the stale connection and what it owed are gone"
        resume(server)
        assert await late == expected(3)
        assert reads.connections == 1


async def test_a_killed_server_fails_the_reads_in_flight_at_once_and_a_restart_recovers() -> None:
    async with seeded() as (server, _, reads):
        assert await reads.run(visitor_read(1)) == expected(1)
        pause(server)
        waiting = [asyncio.create_task(reads.run(visitor_read(n))) for n in range(10)]
        await asyncio.sleep(0.05)
        assert server.process is not None
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
        async with asyncio.timeout(2):  # not a budget's wait: the connection's end fails them
            failed = await asyncio.gather(*waiting, return_exceptions=True)
        assert all(isinstance(f, RedisConnectionError) for f in failed)
        server.process = None
        server.start()  # an empty server on the same port
        assert await reads.run(visitor_read(1)) == [None, {}]
