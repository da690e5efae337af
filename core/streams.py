"""A bounded read of a redis stream from a time on: one page of `XRANGE` a round trip.

`pages` yields the stream's entries (`(id, fields)` pairs) `batch` at a time, asking `room()`
before each page how many more the caller's cap allows; it stops at the stream's end, at the
cap (`stopped(cap)`) or when the monotonic `deadline` has passed (`stopped("time_budget")`).
The caller counts and decodes each page before the next is read. `pages_of` reads several
streams (the event stream's shards) one after the other under the same cap and deadline.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from redis.asyncio import Redis


async def pages(
    redis: Redis,
    stream: str,
    *,
    since_ms: int,
    batch: int,
    room: Callable[[], int],
    cap: str,
    deadline: float,
    stopped: Callable[[str], None],
) -> AsyncIterator[list[Any]]:
    """The entries of `stream` from `since_ms` on, page by page, within the cap and deadline."""
    cursor = f"{since_ms}-0"
    while True:
        count = min(batch, room())
        if count <= 0:
            stopped(cap)
            return
        rows: list[Any] = list(await redis.xrange(stream, min=cursor, max="+", count=count) or [])
        yield rows
        if len(rows) < count:
            return
        if time.monotonic() > deadline:
            stopped("time_budget")
            return
        last = rows[-1][0]
        cursor = "(" + (last.decode() if isinstance(last, bytes) else str(last))


async def pages_of(
    redis: Redis,
    streams: Sequence[str],
    *,
    since_ms: int,
    batch: int,
    room: Callable[[], int],
    cap: str,
    deadline: float,
    stopped: Callable[[str], None],
) -> AsyncIterator[list[Any]]:
    """`pages` of each stream in turn; once the cap or the deadline stops one, the rest are
    not read (and the stop is reported once)."""
    reasons: list[str] = []
    for stream in streams:
        async for rows in pages(
            redis,
            stream,
            since_ms=since_ms,
            batch=batch,
            room=room,
            cap=cap,
            deadline=deadline,
            stopped=reasons.append,
        ):
            yield rows
        if reasons:
            stopped(reasons[0])
            return
