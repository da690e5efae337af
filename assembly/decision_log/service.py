"""The decision log as the app uses it: sample and hand over (hot path), read, replay (admin)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from assembly.config import DecisionSettings
from assembly.decision_log.exceptions import DecisionNotFound, DecisionNotReplayable
from assembly.decision_log.history import LibraryHistory
from assembly.decision_log.ids import is_decision_id
from assembly.decision_log.learned import rebuild
from assembly.decision_log.record import LibraryTag, PendingDecision
from assembly.decision_log.replay import replay_on
from assembly.decision_log.store import DecisionLogStore, Limits
from assembly.decision_log.writer import DecisionLogWriter
from assembly.exceptions import LibraryNotLoaded
from assembly.experiments.allocation import EMPTY_ALLOCATIONS, AllocationSource
from assembly.learning.holder import ModelHolder
from core.redis import Keys
from integration.service import LibraryHolder

_random = random.random


class DecisionLog:
    def __init__(
        self,
        store: DecisionLogStore,
        writer: DecisionLogWriter,
        history: LibraryHistory,
        holder: LibraryHolder,
        settings: DecisionSettings,
        *,
        models: ModelHolder | None = None,
        bandits: AllocationSource | None = None,
    ) -> None:
        self.store = store
        self.writer = writer
        self.history = history
        self._holder = holder
        self._settings = settings
        self._models = models
        self._bandits = bandits
        self.rate = settings.log_sample_rate

    @staticmethod
    def build(
        redis: Redis,
        keys: Keys,
        settings: DecisionSettings,
        holder: LibraryHolder,
        *,
        models: ModelHolder | None = None,
        bandits: AllocationSource | None = None,
    ) -> DecisionLog:
        limits = Limits(
            settings.log_max_len, settings.log_max_age_seconds, settings.log_visitor_max
        )
        store = DecisionLogStore(redis, keys, limits)
        history = LibraryHistory(settings.log_keep_libraries)
        history.follow(holder)
        writer = DecisionLogWriter(
            store,
            history,
            queue_size=settings.log_queue_size,
            batch_size=settings.writer_batch_size,
            flush_seconds=settings.writer_flush_seconds,
        )
        return DecisionLog(store, writer, history, holder, settings, models=models, bandits=bandits)

    # ---------------------------------------------------------------- hot path

    def sampled(self) -> bool:
        """Decided before anything is built: most page views of a sampled log cost one draw."""
        rate = self.rate
        return rate >= 1.0 or (rate > 0.0 and _random() < rate)

    def submit(self, pending: PendingDecision) -> None:
        self.writer.submit(pending)

    # ---------------------------------------------------------------- admin

    async def get(self, decision_id: str) -> dict[str, Any]:
        record = await self.store.get(decision_id) if is_decision_id(decision_id) else None
        if record is None:
            raise DecisionNotFound(
                f"decision {decision_id!r} is not in the log: not sampled "
                f"(DECISIONS_LOG_SAMPLE_RATE {self.rate}), or older than the log keeps "
                f"({self._settings.log_max_len} records, {self._settings.log_max_age_seconds} s)"
            )
        return record

    async def around(self, visitor: str, at: datetime | None, window: int) -> dict[str, Any]:
        """The visitor's logged decisions within `window` seconds of `at` (default: now)."""
        moment = at or datetime.now(UTC)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        ms = int(moment.timestamp() * 1000)
        records, trimmed = await self.store.around(visitor, ms - window * 1000, ms + window * 1000)
        return {
            "visitor": visitor,
            "at": moment.isoformat(),
            "windowSeconds": window,
            "records": records,
            "trimmed": trimmed,
        }

    async def replay(self, decision_id: str) -> dict[str, Any]:
        record = await self.get(decision_id)
        if record["fallback"] is not None or record["content"] is None:
            raise DecisionNotReplayable(
                f"decision {decision_id} was answered by the fallback library "
                f"({record['fallback']}): no decision was made"
            )
        library = self.history.find(LibraryTag(**record["content"]))
        kept = library is not None
        if library is None:
            library = self._holder.library
        if library is None:
            raise LibraryNotLoaded("no content library is loaded on this replica yet")
        live = self._bandits.allocations if self._bandits is not None else EMPTY_ALLOCATIONS
        learned = await rebuild(record.get("learning"), self._models, live)
        tag = self.history.tag(library)
        return replay_on(record, library, tag, kept, self._settings, learned)
