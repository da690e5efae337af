"""A bounded read of a redis stream from a time on: one page of `XRANGE` a round trip.

`pages` yields the stream's entries (`(id, fields)` pairs) `batch` at a time, asking `room()`
before each page how many more the caller's cap allows; it stops at the stream's end, at the
cap (`stopped(cap)`) or when the monotonic `deadline` has passed (`stopped("time_budget")`).
The caller counts and decodes each page before the next is read. Several streams (the event
stream's shards) are read one after the other under the same cap and deadline.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from redis.asyncio import Redis


async def pages(
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
    """The entries of each stream in turn (the event stream's shards, or one stream) from
    `since_ms` on, page by page, within the cap and deadline shared by all of them; a stop is
    reported once, and the streams after it are not read. A `since_ms` before 1970 (a window
    longer than the clock's age) reads from the start: stream ids are never negative."""
    for stream in streams:
        cursor = f"{max(0, since_ms)}-0"
        while True:
            count = min(batch, room())
            if count <= 0:
                stopped(cap)
                return
            found = await redis.xrange(stream, min=cursor, max="+", count=count)
            rows: list[Any] = list(found or [])
            yield rows
            if len(rows) < count:
                break
            if time.monotonic() > deadline:
                stopped("time_budget")
                return
            last = rows[-1][0]
            cursor = "(" + (last.decode() if isinstance(last, bytes) else str(last))
