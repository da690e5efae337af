"""Polling for a condition in tests: a deadline, never a timed assertion."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def truthy(value: object) -> bool:
    return bool(value)


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool] = truthy,
    *,
    within: float = 10.0,
) -> T:
    """Poll `probe` until `accept` holds; fail after `within` seconds (a deadline, not a goal)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await probe()
        if accept(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within} s; last value: {value!r}")
        await asyncio.sleep(0.005)
