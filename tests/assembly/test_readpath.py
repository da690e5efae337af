"""The hot path's one-round-trip read: a script on one slot, pipelined otherwise, same replies."""

from __future__ import annotations

from redis.asyncio import Redis

from core.roundtrip import SHA, OneRoundTrip, RawCommands
from tests.support.redis_server import RedisServer

FIELDS = (b"traits", b"audiences", b"missing")


async def seed(redis: Redis) -> None:
    await redis.hset("p:{v:u:1}:profile", mapping={"traits": "{}", "audiences": "[]"})
    await redis.hset("p:{v:u:1}:decisions", mapping={"a:x": "1", "s:y": "2"})
    await redis.hset("p:{v:a:2}:decisions", mapping={"a:z": "3"})


def batch(*names: str) -> RawCommands:
    commands = RawCommands()
    commands.hmget("p:{v:u:1}:profile", FIELDS)
    for name in names:
        commands.hgetall(name)
    return commands


EXPECTED = [[b"{}", b"[]", None], {b"a:x": b"1", b"s:y": b"2"}, {}]


async def test_one_slot_reads_run_as_a_script(redis: Redis) -> None:
    await seed(redis)
    reads = OneRoundTrip(redis)
    commands = batch("p:{v:u:1}:decisions", "p:{v:u:1}:other")
    assert commands.one_slot()
    await redis.script_flush()  # the first call loads the script (NOSCRIPT, then EVAL)
    assert await reads.run(commands) == EXPECTED
    assert await reads.run(commands) == EXPECTED
    assert reads.scripting
    assert await redis.script_exists(SHA) == [True]
    await reads.aclose()


async def test_reads_across_slots_are_pipelined(redis: Redis) -> None:
    await seed(redis)
    commands = batch("p:{v:u:1}:decisions", "p:{v:a:2}:decisions")
    assert not commands.one_slot()
    reads = OneRoundTrip(redis)
    replies = await reads.run(commands)
    assert replies == [EXPECTED[0], EXPECTED[1], {b"a:z": b"3"}]
    await reads.aclose()


def no_scripting() -> RedisServer:
    """A real redis-server whose EVAL and EVALSHA are renamed away (as some managed stores do)."""
    return RedisServer("--rename-command", "EVALSHA", "", "--rename-command", "EVAL", "")


async def test_a_store_without_scripting_falls_back_for_good() -> None:
    own = no_scripting()
    own.start()
    try:
        client = Redis.from_url(own.url)
        await seed(client)
        reads = OneRoundTrip(client)
        commands = batch("p:{v:u:1}:decisions", "p:{v:u:1}:other")
        assert await reads.run(commands) == EXPECTED
        assert reads.scripting is False
        assert await reads.run(commands) == EXPECTED
        await reads.aclose()
        await client.aclose()
    finally:
        own.stop()


async def test_a_restarted_server_costs_one_retry_not_an_error() -> None:
    own = RedisServer()
    own.start()
    try:
        client = Redis.from_url(own.url)
        reads = OneRoundTrip(client)
        await seed(client)
        commands = batch("p:{v:u:1}:decisions", "p:{v:u:1}:other")
        assert await reads.run(commands) == EXPECTED
        own.stop()
        own.start()  # an empty server: the idle connection is stale
        assert await reads.run(commands) == [[None, None, None], {}, {}]
        await reads.aclose()
        await client.aclose()
    finally:
        own.stop()
