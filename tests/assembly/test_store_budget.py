"""A hung or dead store costs a page view at most its read budget: degraded answers, a breaker
that opens after a few failures and probes one request at a time, and no connection reused
with a reply still pending."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from assembly.breaker import Breaker
from core.roundtrip import OneRoundTrip, RawCommands
from tests.assembly.faults import pause, private_redis, resume
from tests.assembly.support import decision_app, runtime

FAST: dict[str, Any] = {"read_budget_seconds": 0.05, "breaker_open_seconds": 0.2}
HOME = {"template": "home", "user": {"id": "u-1"}, "context": {"audiences": ["cart_abandoners"]}}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TestBreaker:
    def test_opens_after_consecutive_failures_only(self) -> None:
        breaker = Breaker(threshold=3, open_seconds=1.0, clock=Clock())
        for _ in range(2):
            assert breaker.acquire()
            breaker.failure("budget")
        assert breaker.acquire()
        breaker.success()  # a success in between resets the count
        for _ in range(2):
            breaker.failure("budget")
        assert breaker.state == "closed"
        breaker.failure("budget")
        assert breaker.state == "open"
        assert not breaker.acquire()

    def test_half_open_lets_one_probe_through_at_a_time(self) -> None:
        clock = Clock()
        breaker = Breaker(threshold=1, open_seconds=1.0, clock=clock)
        breaker.failure("budget")
        assert not breaker.acquire()
        clock.now += 1.0
        assert breaker.state == "half-open"
        assert breaker.acquire(), "the first call after the open period probes"
        assert not breaker.acquire(), "others skip the store while the probe runs"
        breaker.failure("budget")
        assert breaker.state == "open", "a failed probe opens it again"
        assert not breaker.acquire()
        clock.now += 1.0
        assert breaker.acquire()
        breaker.success()
        assert breaker.state == "closed"
        assert breaker.acquire()
        assert breaker.acquire()

    def test_a_cancelled_probe_frees_the_slot(self) -> None:
        clock = Clock()
        breaker = Breaker(threshold=1, open_seconds=1.0, clock=clock)
        breaker.failure("budget")
        clock.now += 1.0
        assert breaker.acquire()
        breaker.release()
        assert breaker.acquire()


def visitor_batch(user: str) -> RawCommands:
    commands = RawCommands()
    commands.hgetall(f"p:{{v:u:{user}}}:decisions")
    commands.get(f"p:{{v:u:{user}}}:name")
    return commands


async def test_a_read_cancelled_mid_flight_never_leaves_its_reply_to_the_next() -> None:
    with private_redis() as server:
        client = Redis.from_url(server.url)
        reads = OneRoundTrip(client)
        for user in ("a", "b"):
            await client.set(f"p:{{v:u:{user}}}:name", user)
        assert await reads.run(visitor_batch("a")) == [{}, b"a"]
        assert reads.connections == 1
        pause(server)
        for _ in range(3):
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05):
                    await reads.run(visitor_batch("a"))
        assert reads.in_flight == 3, "the cancelled reads' replies are still owed"
        resume(server)
        # the replies of the cancelled reads arrive first, and are dropped
        for _ in range(5):
            assert await reads.run(visitor_batch("b")) == [{}, b"b"]
        assert reads.in_flight == 0
        assert reads.connections == 1
        await reads.aclose()
        await client.aclose()


async def test_a_hung_store_answers_degraded_then_recovers() -> None:
    with private_redis() as server:
        async with decision_app(server.url, **FAST) as (app, client):
            first = await client.post("/v1/assemble", json=HOME)
            assert first.json()["degraded"] is False
            pause(server)
            during = await asyncio.gather(
                *(client.post("/v1/assemble", json=HOME) for _ in range(20))
            )
            breaker = app.state.services.assembly.service.profiles.breaker
            assert breaker.state == "open"
            later = [await client.post("/v1/assemble", json=HOME) for _ in range(5)]
            resume(server)
            await asyncio.sleep(0.25)  # the open period passes: the next page view probes
            after = await client.post("/v1/assemble", json=HOME)
            assert breaker.state == "closed"
            assert runtime(app).reader.reads.connections == 1
    for response in [*during, *later]:
        assert response.status_code == 200
        answer = response.json()
        assert answer["degraded"] is True
        assert answer["slots"][0]["variant"] == "hero-cart", "request audiences still count"
    assert after.json()["degraded"] is False


async def test_a_dead_store_answers_degraded_and_the_breaker_probes_the_restart() -> None:
    with private_redis() as server:
        async with decision_app(server.url, **FAST) as (app, client):
            server.stop()
            during = [await client.post("/v1/assemble", json=HOME) for _ in range(5)]
            breaker = app.state.services.assembly.service.profiles.breaker
            assert breaker.state == "open"
            server.start()
            await asyncio.sleep(0.25)
            after = await client.post("/v1/assemble", json=HOME)
    assert [r.json()["degraded"] for r in during] == [True] * 5
    assert after.json()["degraded"] is False
