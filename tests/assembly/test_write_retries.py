"""A write that timed out on a stalled Redis may still run when the server wakes: the writers
that count (visitor state, the decision log) must not send it again."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

from tests.assembly.faults import pause, private_redis, resume
from tests.assembly.support import decision_app, logged, settle
from tests.support.app import assemble

STALL = 0.9
CAP_COUNT = "n:banner-winter-sale:d20261125"  # the demo banner's daily cap (5), on NOW's day


async def test_a_write_that_timed_out_is_not_sent_again() -> None:
    with private_redis() as server:
        async with decision_app(server.url, writer_flush_seconds=0.2) as (app, client):
            await assemble(client, user={"id": "warm-up"})  # scripts loaded, connections open
            await settle(app)
            await logged(app)
            answer = await assemble(client, user={"id": "capped"}, sessionId="s")
            pause(server)  # the writers' batches leave after 0.2 s, into a stalled store
            await asyncio.sleep(STALL)  # past the socket timeout (0.5 s), not past a retry's
            resume(server)
            await settle(app)
            await logged(app)
        stored = Redis.from_url(server.url)
        try:
            count = await stored.hget("mbtest:{v:u:capped}:decisions", CAP_COUNT)
            members: Any = await stored.zrange("mbtest:decisions:log:ids", 0, -1)
        finally:
            await stored.aclose()
    assert count == b"1", "the page view was counted once"
    mine = [m for m in members if m.decode().startswith(answer["decisionId"])]
    assert len(mine) == 1, "the decision was logged once"
