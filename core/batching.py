"""A bounded queue drained in batches by one background task: how page views hand work off.

`submit` never blocks (a full queue drops the item, counted, logged at most every 10 s);
`run` waits for an item, lets a batch fill for `flush_seconds`, and hands it to `flush`. On
cancellation (shutdown) it finishes the batch being flushed, then flushes what is queued: a
batch taken from the queue is never dropped half way, nor written twice. That work is bounded
(`FINISH_SECONDS`, under the time `core.tasks.stop_tasks` gives) and is not cut short by the
further cancels `stop_tasks` sends meanwhile; then the cancellation goes on.

The queue is a deque and one wake-up future, not an `asyncio.Queue`: a page view's `submit`
is an append (the Queue's put and get bookkeeping was ~1.5% of a page view's CPU, profiled).
Everything runs on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

import structlog
from prometheus_client import Counter

from core.tasks import STOP_SECONDS

log = structlog.get_logger()

T = TypeVar("T")
DROP_LOG_INTERVAL = 10.0
FINISH_SECONDS = STOP_SECONDS - 1.0  # ends before stop_tasks gives up and closers run


class Batcher(Generic[T]):
    def __init__(
        self,
        flush: Callable[[list[T]], Awaitable[None]],
        *,
        queue_size: int,
        batch_size: int,
        flush_seconds: float,
        dropped: Counter,
        full_event: str,
    ) -> None:
        self._flush = flush
        self._items: deque[T] = deque()
        self._queue_size = queue_size
        self._waiter: asyncio.Future[None] | None = None
        self._batch_size = batch_size
        self._flush_seconds = flush_seconds
        self._dropped = dropped
        self._full_event = full_event
        self._dropped_logged_at = 0.0
        self._flushing = 0

    def submit(self, item: T) -> bool:
        """Queue `item`; False (counted, logged now and then) when the queue is full."""
        if len(self._items) >= self._queue_size:
            self._dropped.inc()
            now = time.monotonic()
            if now - self._dropped_logged_at > DROP_LOG_INTERVAL:
                self._dropped_logged_at = now
                log.warning(self._full_event, size=self._queue_size)
            return False
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    @property
    def queued(self) -> int:
        """Items waiting in the queue (not yet taken into a batch)."""
        return len(self._items)

    @property
    def unwritten(self) -> int:
        """Items queued or being flushed now (0: everything handed over is done)."""
        return len(self._items) + self._flushing

    async def run(self) -> None:
        """Drain forever; on cancellation, finish the batch in flight and flush the queue."""
        flushing: asyncio.Future[None] | None = None
        try:
            while True:
                await self._wait()
                if self._flush_seconds > 0:
                    await asyncio.sleep(self._flush_seconds)  # let the batch fill
                batch = self._take()
                self._flushing = len(batch)  # unwritten from the moment it leaves the queue
                flushing = asyncio.ensure_future(self._flush_counted(batch))
                await asyncio.shield(flushing)  # a cancel here leaves the batch running
                flushing = None
        finally:
            await _despite_cancels(self._finish(flushing), FINISH_SECONDS)

    async def _flush_counted(self, batch: list[T]) -> None:
        try:
            await self._flush(batch)
        finally:
            self._flushing = 0

    async def _finish(self, flushing: asyncio.Future[None] | None) -> None:
        """The batch in flight to its end (its failure logged, not raised), then the queue."""
        if flushing is not None:
            await asyncio.wait({flushing})
            if not flushing.cancelled() and flushing.exception() is not None:
                log.error("core.batching.flush_failed", error=repr(flushing.exception()))
        await self.drain()

    async def _wait(self) -> None:
        """Return once an item is queued."""
        while not self._items:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    def _take(self) -> list[T]:
        items = self._items
        count = min(len(items), self._batch_size)
        return [items.popleft() for _ in range(count)]

    async def drain(self) -> None:
        """Flush everything queued now (shutdown, tests)."""
        while self._items:
            await self._flush(self._take())


async def _despite_cancels(work: Coroutine[Any, Any, None], seconds: float) -> None:
    """Run `work` to its end, however often the caller is cancelled meanwhile, for at most
    `seconds` (then it is cancelled, logged). The caller's cancellation is not lost: `run`
    re-raises it when its `finally` ends."""
    loop = asyncio.get_running_loop()
    task = loop.create_task(work)
    deadline = loop.time() + seconds
    while not task.done():
        remaining = deadline - loop.time()
        if remaining <= 0:
            task.cancel()
            log.error("core.batching.shutdown_cut", seconds=seconds)
            return
        try:
            await asyncio.wait({task}, timeout=remaining)
        except asyncio.CancelledError:
            continue  # shutdown cancels again every round; the work goes on
    if not task.cancelled() and task.exception() is not None:
        log.error("core.batching.shutdown_flush_failed", error=repr(task.exception()))
