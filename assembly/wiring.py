"""Assembly's start: the decision engine, the decision log, the assemble and preview services,
and their background tasks, registered on the lifespan's exit stack (called from app.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from assembly.config import DecisionSettings
from assembly.decision_log.service import DecisionLog
from assembly.decisions.engine import DecisionEngine
from assembly.decisions.state import PendingWrites
from assembly.experiments.allocation import AllocationStore
from assembly.experiments.bandit_tasks import AllocationWatcher, bandit_forever
from assembly.fallback import FallbackLibrary
from assembly.killswitch import KillSwitchStore, SwitchWatcher
from assembly.last_good import SnapshotWriter
from assembly.learning.holder import ModelHolder
from assembly.learning.store import ModelStore
from assembly.ports import LibrarySource
from assembly.preview.config import PreviewSettings
from assembly.preview.drafts import DraftSource
from assembly.preview.service import PreviewService
from assembly.preview.wiring import build_preview
from assembly.service import AssemblyService
from assembly.store import DecisionStateStore, PipelinedProfiles
from assembly.writer import DecisionWriter, EventSink, guardrail_forever
from core.redis import Keys
from core.tasks import BackgroundTasks
from integration.service import LibraryHolder

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
    bandits: AllocationWatcher
    event_streams: tuple[str, ...] = ()
    """The event stream's shards, where the contextual bandit's fits find goal events."""

    @staticmethod
    def build(
        redis: Redis,
        keys: Keys,
        settings: DecisionSettings,
        libraries: LibrarySource,
        profiles: PipelinedProfiles,
        sink: EventSink,
        event_streams: tuple[str, ...] = (),
        writes: Redis | None = None,
    ) -> DecisionRuntime:
        pending = PendingWrites()
        switches = KillSwitchStore(redis, keys)
        watcher = SwitchWatcher(switches, settings.kill_switch_poll_seconds)
        writer = DecisionWriter(writes or redis, keys, settings, pending, sink)
        models = ModelHolder(ModelStore(redis, keys), settings.model_poll_seconds)
        serving = models if settings.model_enabled else None
        store = AllocationStore(redis, keys, settings.bandit_history)
        bandits = AllocationWatcher(store, settings.bandit_poll_seconds)
        return DecisionRuntime(
            redis=redis,
            keys=keys,
            settings=settings,
            libraries=libraries,
            reader=DecisionStateStore(redis, keys, profiles, pending),
            switches=switches,
            watcher=watcher,
            writer=writer,
            engine=DecisionEngine(settings, switches=watcher, models=serving, allocations=bandits),
            models=models,
            bandits=bandits,
            event_streams=event_streams,
        )

    async def start(self, tasks: BackgroundTasks) -> None:
        """Load the kill switches (so the first request honours them), start the tasks."""
        await asyncio.gather(
            _load(self.watcher.refresh(), "assembly.kill_switch.load_failed"),
            _load(self.bandits.refresh(), "assembly.bandit.load_failed"),
        )
        tasks.spawn(self.writer.run(), name="decision-writer")
        tasks.spawn(self.watcher.run(self.redis), name="kill-switch-watch")
        if self.engine.models is not None:
            tasks.spawn(self.models.run(self.redis), name="model-watch")
        tasks.spawn(
            guardrail_forever(self.redis, self.keys, self.settings, self.libraries, self.switches),
            name="rollout-guardrail",
        )
        tasks.spawn(self.bandits.run(), name="bandit-weights-watch")
        tasks.spawn(
            bandit_forever(
                self.redis, self.keys, self.settings, self.libraries, self.event_streams
            ),
            name="bandit-update",
        )


@dataclass(frozen=True, slots=True)
class AssemblyPorts:
    """What assembly is given by the rest of the app (app.py wires these)."""

    holder: LibraryHolder
    profiles: PipelinedProfiles
    sink: EventSink
    """Where newly recorded exposures go (the event pipeline)."""
    fallback: FallbackLibrary
    snapshot: SnapshotWriter
    drafts: DraftSource | None
    """The Preview API (None: no CONTENTFUL_PREVIEW_TOKEN)."""
    on_miss: Callable[[str], None] | None = None
    """Told of a known user without a stored profile (the Profile API pull)."""
    event_streams: tuple[str, ...] = ()
    """Every shard of the event stream (empty: the one stream)."""
    writes: Redis | None = None
    """The client for writes that must not run twice (`core.redis.writes_client`; None: the
    shared one)."""


@dataclass(frozen=True, slots=True)
class AssemblyServices:
    service: AssemblyService
    decisions: DecisionRuntime
    decision_log: DecisionLog
    preview: PreviewService


async def _load(refresh: Awaitable[object], failed: str) -> None:
    """A start-up load from the store, bounded (2 s): a sick store only logs `failed`."""
    try:
        await asyncio.wait_for(refresh, timeout=2.0)
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning(failed, error=str(exc))


async def start_assembly(
    redis: Redis,
    keys: Keys,
    settings: DecisionSettings,
    preview: PreviewSettings,
    ports: AssemblyPorts,
    stack: AsyncExitStack,
    tasks: BackgroundTasks,
    *,
    link_depth: int,
) -> AssemblyServices:
    """Build the services, then run their tasks in `tasks` until `stack` closes."""
    writes = ports.writes or redis
    decisions = DecisionRuntime.build(
        redis,
        keys,
        settings,
        ports.holder,
        ports.profiles,
        sink=ports.sink,
        event_streams=ports.event_streams,
        writes=writes,
    )
    decision_log = DecisionLog.build(
        writes,
        keys,
        settings,
        ports.holder,
        models=decisions.models,
        bandits=decisions.bandits,
    )
    service = AssemblyService(
        ports.holder,
        decisions.reader,
        ports.fallback,
        engine=decisions.engine,
        decision_log=decision_log,
        writer=decisions.writer,
    )
    service.profiles.on_miss = ports.on_miss
    parts = AssemblyServices(
        service=service,
        decisions=decisions,
        decision_log=decision_log,
        preview=build_preview(
            preview,
            ports.drafts,
            ports.holder,
            decisions.settings,
            decisions.watcher,
            link_depth=link_depth,
        ),
    )
    stack.push_async_callback(decisions.reader.reads.aclose)  # after the tasks stop
    stack.push_async_callback(tasks.stop)
    tasks.spawn(ports.snapshot.run(), name="library-snapshot")
    await decisions.start(tasks)
    tasks.spawn(decision_log.writer.run(), name="decision-log-writer")
    return parts
