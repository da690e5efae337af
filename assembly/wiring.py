"""The decision engine's parts, built once in the lifespan, and their background tasks."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from assembly.config import DecisionSettings
from assembly.decision_state import PendingWrites
from assembly.engine import DecisionEngine
from assembly.killswitch import KillSwitchStore, SwitchWatcher
from assembly.learning.holder import ModelHolder
from assembly.learning.store import ModelStore
from assembly.ports import LibrarySource
from assembly.store import DecisionStateStore, PipelinedProfiles
from assembly.writer import DecisionWriter, EventSink, guardrail_forever
from core.redis import Keys

log = structlog.get_logger()


@dataclass
class DecisionRuntime:
    redis: Redis
    keys: Keys
    settings: DecisionSettings
    libraries: LibrarySource
    reader: DecisionStateStore
    switches: KillSwitchStore
    watcher: SwitchWatcher
    writer: DecisionWriter
    engine: DecisionEngine
    models: ModelHolder

    @staticmethod
    def build(
        redis: Redis,
        keys: Keys,
        settings: DecisionSettings,
        libraries: LibrarySource,
        profiles: PipelinedProfiles,
        sink: EventSink,
    ) -> DecisionRuntime:
        pending = PendingWrites()
        switches = KillSwitchStore(redis, keys)
        watcher = SwitchWatcher(switches, settings.kill_switch_poll_seconds)
        writer = DecisionWriter(redis, keys, settings, pending, sink)
        models = ModelHolder(ModelStore(redis, keys), settings.model_poll_seconds)
        serving = models if settings.model_enabled else None
        return DecisionRuntime(
            redis=redis,
            keys=keys,
            settings=settings,
            libraries=libraries,
            reader=DecisionStateStore(redis, keys, profiles, pending),
            switches=switches,
            watcher=watcher,
            writer=writer,
            engine=DecisionEngine(settings, switches=watcher, writer=writer, models=serving),
            models=models,
        )

    async def start(self) -> list[asyncio.Task[Any]]:
        """Load the kill switches (so the first request honours them), start the tasks."""
        try:
            await asyncio.wait_for(self.watcher.refresh(), timeout=2.0)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("assembly.kill_switch.load_failed", error=str(exc))
        watch = [asyncio.create_task(self.models.run(self.redis), name="model-watch")]
        return [
            *(watch if self.engine.models is not None else []),
            asyncio.create_task(self.reader.reads.hold(), name="decision-read-connections"),
            asyncio.create_task(self.writer.run(), name="decision-writer"),
            asyncio.create_task(self.watcher.run(self.redis), name="kill-switch-watch"),
            asyncio.create_task(
                guardrail_forever(
                    self.redis, self.keys, self.settings, self.libraries, self.switches
                ),
                name="rollout-guardrail",
            ),
        ]
