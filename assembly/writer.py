"""Off-path work of the decision engine: the batched writer and the rollout guardrail loop.

`DecisionWriter.submit` never blocks a request: it queues the page view's `VisitorWrite` (and
registers it as pending, so the visitor's next request on this replica already sees it); a
lifespan task drains the queue in batches of pipelined writes. "Experiment Viewed" events of
newly recorded exposures go to the event pipeline through an `EventSink`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from assembly import metrics
from assembly.config import DecisionSettings
from assembly.decisions.state import PendingWrites, VisitorWrite
from assembly.experiments.guardrail import check_rollouts
from assembly.killswitch import KillSwitchStore
from assembly.ports import LibrarySource
from assembly.store import apply_writes
from core.batching import Batcher
from core.cancellation import reraise_if_cancelling
from core.errors import BridgeError
from core.redis import Keys

log = structlog.get_logger()

EventSink = Callable[[list[dict[str, Any]]], Awaitable[object]]
EXPOSURE_SOURCE = "decisions"  # the `src` of exposure events in the event pipeline's stream


class DecisionWriter:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        settings: DecisionSettings,
        pending: PendingWrites,
        sink: EventSink,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._settings = settings
        self.pending = pending
        self._sink = sink
        self._batch: Batcher[VisitorWrite] = Batcher(
            self.flush,
            queue_size=settings.writer_queue_size,
            batch_size=settings.writer_batch_size,
            flush_seconds=settings.writer_flush_seconds,
            dropped=metrics.WRITES_DROPPED,
            full_event="assembly.writer.queue_full",
        )
        self._metas: dict[str, bytes] = {}

    def submit(self, write: VisitorWrite) -> None:
        if self._batch.submit(write):
            self.pending.add(write)

    async def run(self) -> None:
        """Drain forever; on cancellation, flush what is queued (best effort) and stop."""
        await self._batch.run()

    async def drain(self) -> None:
        """Flush everything queued now (shutdown, tests)."""
        await self._batch.drain()

    async def flush(self, batch: list[VisitorWrite]) -> None:
        events: list[dict[str, Any]] = []
        for write in batch:
            write.ttl = lifetime(write, self._settings)
        try:
            events = await apply_writes(
                self._redis,
                self._keys,
                batch,
                ttl_seconds=self._settings.state_ttl_days * 86400,
                metas=self._metas,
            )
            metrics.WRITES_FLUSHED.inc(len(batch))
            if events:
                await self._sink(events)
        except (RedisError, OSError) as exc:
            metrics.WRITES_FAILED.inc(len(batch))
            log.warning("assembly.writer.flush_failed", writes=len(batch), error=str(exc))
        except BridgeError as exc:  # the event pipeline refused the exposures
            log.error("assembly.writer.exposures_rejected", detail=exc.detail, events=len(events))
        finally:
            self.pending.done(batch)

    @property
    def queued(self) -> int:
        return self._batch.queued


DAY = 86400


def lifetime(write: VisitorWrite, settings: DecisionSettings) -> int:
    """Seconds the visitor's hash must live after this write: as long as what it remembers.

    An arm, a conversion or a lifetime count: the visitor's lifetime (`state_ttl_days`, or the
    shorter `anonymous_state_ttl_days` without a userId). Otherwise a weekly count: 8 days; a
    daily one: 2 days; session fields: `session_ttl_seconds`. The writer only ever lengthens
    a hash's expiry (`EXPIRE NX`, then `GT`), so a short write never cuts a longer one.
    """
    counts = write.incr.keys()
    if write.durable or write.assignments or any(n.endswith(":l") for n in counts):
        days = settings.state_ttl_days if write.user_id else settings.anonymous_state_ttl_days
        return days * DAY
    seconds = settings.session_ttl_seconds
    if any(n.startswith("n:") and n.rsplit(":", 1)[1].startswith("w") for n in counts):
        seconds = max(seconds, 8 * DAY)
    elif any(n.startswith("n:") for n in counts):
        seconds = max(seconds, 2 * DAY)
    return seconds


async def guardrail_forever(
    redis: Redis,
    keys: Keys,
    settings: DecisionSettings,
    libraries: LibrarySource,
    switches: KillSwitchStore,
) -> None:
    """Judge every measured rollout once per `guardrail_interval_seconds`."""
    while True:
        await asyncio.sleep(settings.guardrail_interval_seconds)
        library = libraries.library
        if library is None:
            continue
        try:
            await check_rollouts(redis, keys, settings, library, switches)
        except (RedisError, OSError) as exc:
            reraise_if_cancelling(exc)
            log.warning("assembly.guardrail.failed", error=str(exc))
