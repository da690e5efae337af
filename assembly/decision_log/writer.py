"""The off-path writer of decision records: a bounded queue drained in pipelined batches.

`submit` never blocks a page view (a full queue drops the record, counted); the lifespan task
encodes the records (`encode_record`) and appends each batch in one round trip (a script).
"""

from __future__ import annotations

import structlog
from redis.exceptions import RedisError

from assembly.decision_log import metrics
from assembly.decision_log.history import LibraryHistory
from assembly.decision_log.ids import decision_ms
from assembly.decision_log.record import PendingDecision, RecordCache, encode_record
from assembly.decision_log.store import DecisionLogStore, Entry
from core.batching import Batcher
from core.redis import anonymous_visitor, user_visitor

log = structlog.get_logger()


class DecisionLogWriter:
    def __init__(
        self,
        store: DecisionLogStore,
        history: LibraryHistory,
        *,
        queue_size: int,
        batch_size: int,
        flush_seconds: float,
    ) -> None:
        self._store = store
        self._history = history
        self._cache = RecordCache()
        self._batch: Batcher[PendingDecision] = Batcher(
            self.flush,
            queue_size=queue_size,
            batch_size=batch_size,
            flush_seconds=flush_seconds,
            dropped=metrics.DROPPED,
            full_event="assembly.decision_log.queue_full",
        )

    def submit(self, pending: PendingDecision) -> None:
        self._batch.submit(pending)

    @property
    def unwritten(self) -> int:
        """Records queued or being written now (0: everything handed over is in the store)."""
        return self._batch.unwritten

    async def run(self) -> None:
        """Drain forever; on cancellation, flush what is queued (best effort)."""
        await self._batch.run()

    async def drain(self) -> None:
        """Write everything queued now (shutdown, tests)."""
        await self._batch.drain()

    async def flush(self, batch: list[PendingDecision]) -> None:
        entries = []
        for pending in batch:
            try:
                entries.append(self._entry(pending))
            except TypeError as exc:  # a profile value JSON cannot hold
                metrics.FAILED.inc()
                log.error("assembly.decision_log.unencodable", id=pending.id, error=str(exc))
        if not entries:
            return
        try:
            await self._store.append(entries)
        except (RedisError, OSError) as exc:
            metrics.FAILED.inc(len(entries))
            log.warning("assembly.decision_log.flush_failed", records=len(entries), error=str(exc))
            return
        metrics.LOGGED.inc(len(entries))

    def _entry(self, pending: PendingDecision) -> Entry:
        library = pending.library
        tag = self._history.tag(library) if library is not None else None
        body = encode_record(pending, tag, self._cache)
        user = pending.request.user
        visitors = tuple(
            kind(value)
            for kind, value in ((user_visitor, user.id), (anonymous_visitor, user.anonymousId))
            if value
        )
        return Entry(pending.id, decision_ms(pending.id), visitors, body)
