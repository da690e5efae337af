"""A bounded queue drained in batches by one background task: how page views hand work off.

`submit` never blocks (a full queue drops the item, counted, logged at most every 10 s);
`run` waits for an item, lets a batch fill for `flush_seconds`, and hands it to `flush`; on
cancellation it flushes what it holds and what is queued (best effort).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import structlog
from prometheus_client import Counter

log = structlog.get_logger()

T = TypeVar("T")
DROP_LOG_INTERVAL = 10.0


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
        self._queue: asyncio.Queue[T] = asyncio.Queue(queue_size)
        self._batch_size = batch_size
        self._flush_seconds = flush_seconds
        self._dropped = dropped
        self._full_event = full_event
        self._dropped_logged_at = 0.0
        self._flushing = 0

    def submit(self, item: T) -> bool:
        """Queue `item`; False (counted, logged now and then) when the queue is full."""
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self._dropped.inc()
            now = time.monotonic()
            if now - self._dropped_logged_at > DROP_LOG_INTERVAL:
                self._dropped_logged_at = now
                log.warning(self._full_event, size=self._queue.maxsize)
            return False
        return True

    @property
    def queued(self) -> int:
        """Items waiting in the queue (not yet taken into a batch)."""
        return self._queue.qsize()

    @property
    def unwritten(self) -> int:
        """Items queued or being flushed now (0: everything handed over is done)."""
        return self._queue.qsize() + self._flushing

    async def run(self) -> None:
        """Drain forever; on cancellation, flush what is queued (best effort)."""
        batch: list[T] = []
        try:
            while True:
                batch = [await self._queue.get()]
                self._flushing = 1
                if self._flush_seconds > 0:
                    await asyncio.sleep(self._flush_seconds)
                self._take(batch)
                self._flushing = len(batch)
                taken, batch = batch, []  # a cancel during the flush must not apply it twice
                await self._flush(taken)
                self._flushing = 0
        finally:
            if batch:  # cancelled while the batch was filling
                await self._flush(batch)
            self._flushing = 0
            await self.drain()

    def _take(self, batch: list[T]) -> None:
        while len(batch) < self._batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                return

    async def drain(self) -> None:
        """Flush everything queued now (shutdown, tests)."""
        while not self._queue.empty():
            batch: list[T] = []
            self._take(batch)
            await self._flush(batch)
