"""Keep a replica's copy current: reload on every announcement on a redis channel, and poll.

One loop for every replica-local copy whose writer announces changes (the kill switches, the
ranking model): `follow` subscribes, reloads once (anything changed before the subscription
took effect), then reloads after every burst of messages and at least every `poll_seconds`. A
lost connection is logged as `<event>` and retried; the loop never ends until cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.cancellation import reraise_if_cancelling

log = structlog.get_logger()

Reload = Callable[[], Awaitable[object]]


async def follow(
    redis: Redis, channel: str, reload: Reload, *, poll_seconds: float, failed_event: str
) -> None:
    """Call `reload` on every announcement on `channel` and at least every `poll_seconds`."""
    while True:
        try:
            await _listen(redis, channel, reload, poll_seconds)
        except (RedisError, OSError) as exc:
            reraise_if_cancelling(exc)
            log.warning(failed_event, error=str(exc))
            await asyncio.sleep(min(poll_seconds, 1.0))


async def _listen(redis: Redis, channel: str, reload: Reload, poll_seconds: float) -> None:
    pubsub = redis.pubsub()
    try:
        await pubsub.subscribe(channel)
        await reload()  # anything changed before the subscription took effect
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=poll_seconds)
            if message is not None:
                while await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.0):
                    pass
            await reload()
    finally:
        with contextlib.suppress(RedisError, OSError):
            await pubsub.aclose()  # type: ignore[no-untyped-call]
