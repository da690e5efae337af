"""The started app's background tasks, cancelled together at shutdown, boundedly."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import structlog

log = structlog.get_logger()

T = TypeVar("T")


class BackgroundTasks:
    """The tasks the app runs until shutdown (a finished task leaves the set by itself).

    app.py makes one and hands it to every package's start function, which registers `stop`
    on the lifespan's exit stack after its own closers and spawns into it. The exit stack runs
    the last registered `stop` first: it ends every package's tasks together, within one bound,
    before any closer runs; the other registrations find nothing left (and still cover a
    start-up that failed half way).
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(list(self._tasks))

    def __contains__(self, task: object) -> bool:
        return task in self._tasks

    async def stop(self) -> None:
        await stop_tasks(list(self._tasks))


STOP_ROUND_SECONDS = 0.25
STOP_ROUNDS = 20
STOP_SECONDS = STOP_ROUND_SECONDS * STOP_ROUNDS
"""How long `stop_tasks` waits for the tasks to end, cancelling them again every round."""


async def stop_tasks(tasks: list[asyncio.Task[Any]], *, attempts: int = STOP_ROUNDS) -> None:
    """Cancel background tasks until they end.

    A cancel that lands inside a Redis read with a socket timeout can be turned into a
    timeout and retried by redis-py, so one cancel is not always enough.
    """
    pending = {t for t in tasks if not t.done()}
    for _ in range(attempts):
        if not pending:
            return
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=STOP_ROUND_SECONDS)
    log.error("service.tasks_stuck", tasks=[t.get_name() for t in pending])
