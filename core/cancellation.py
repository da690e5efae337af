"""Cancellation that survives redis-py: one helper for every background loop."""

from __future__ import annotations

import asyncio


def reraise_if_cancelling(exc: BaseException) -> None:
    """redis-py may turn a cancelled read into a ConnectionError: never swallow a cancel.

    Call it first in an `except (RedisError, OSError)` block of a loop that must stop when its
    task is cancelled.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc
