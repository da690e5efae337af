"""The bandits' two background tasks: one replica updates the weights, every replica loads them.

- `bandit_forever`: every `bandit_update_seconds`, the replica that gets the lease
  (`<p>:decisions:bandit:lease`, `integration.store.SyncLock`) recomputes each running bandit's
  weights from its counters (`update_bandits`), then fits the contextual bandits' parameters
  (`contextual_tasks.update_contextual`). An allocation younger than half the period is
  left alone, so replicas whose timers fire one after the other do not update twice.
- `AllocationWatcher`: every `bandit_poll_seconds`, one GET of the version; the weights are
  reloaded into process memory only when it moved.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from assembly import metrics
from assembly.config import DecisionSettings
from assembly.experiments.allocation import (
    EMPTY_ALLOCATIONS,
    Allocation,
    Allocations,
    AllocationStore,
)
from assembly.experiments.bandit import ArmData, run_seed, thompson_weights
from assembly.experiments.contextual import Policy
from assembly.experiments.contextual_params import BrokenParameters, compile_policy
from assembly.experiments.contextual_tasks import update_contextual
from assembly.ports import LibrarySource
from assembly.store import read_counts
from core.cancellation import reraise_if_cancelling
from core.redis import Keys
from integration.library import Library
from integration.model import Arms
from integration.store import SyncLock

log = structlog.get_logger()
LEASE_SECONDS = 30.0


def bandit_arms(library: Library) -> list[Arms]:
    """The running bandits without a winner, each with its arms in the first slot using it."""
    found: dict[str, Arms] = {}
    for slot in library.slots.values():
        for key, arms in slot.arms.items():
            experiment = arms.experiment
            live = experiment.status == "running" and experiment.winner is None
            if live and experiment.mode != "ab":
                found.setdefault(key, arms)
    return list(found.values())


async def update_bandits(
    redis: Redis,
    keys: Keys,
    settings: DecisionSettings,
    library: Library,
    now: float,
    bandits: list[Arms] | None = None,
) -> list[Allocation]:
    """New weights for every running bandit whose allocation is due (`bandits`: the library's,
    when already found); the ones stored."""
    store = AllocationStore(redis, keys, settings.bandit_history)
    stored = []
    for arms in bandit_arms(library) if bandits is None else bandits:
        allocation = await _update(redis, keys, store, arms, settings, now)
        if allocation is not None:
            stored.append(allocation)
    return stored


async def _update(
    redis: Redis,
    keys: Keys,
    store: AllocationStore,
    arms: Arms,
    settings: DecisionSettings,
    now: float,
) -> Allocation | None:
    key = arms.experiment.key
    current = await store.get(key)
    if current is not None and now - current.at < settings.bandit_update_seconds / 2:
        return None
    counts = await read_counts(redis, keys, key)
    labels = arms.labels
    data = [ArmData(x, counts.visitors.get(x, 0), counts.conversions.get(x, 0)) for x in labels]
    total = sum(a.visitors for a in data)
    version = (current.version if current else 0) + 1
    weights, chance = thompson_weights(
        data, settings.bandit_min_exploration, run_seed(key, version)
    )
    expected = _expected(current, arms, total)
    allocation = Allocation(version, now, labels, tuple(weights), tuple(chance), expected, total)
    await store.put(key, allocation)
    metrics.BANDIT_UPDATES.inc()
    log.info(
        "assembly.bandit.updated",
        experiment=key,
        version=version,
        visitors=total,
        weights=dict(zip(labels, (round(w, 4) for w in weights), strict=True)),
    )
    return allocation


def _expected(current: Allocation | None, arms: Arms, total: int) -> dict[str, float]:
    """Expected visitors per arm up to now: the last allocation's tally plus the visitors since
    it, spread by its weights. Before the first allocation (or when the arms changed since)
    the weights bucketing used were the editor's (or the equal split) in `arms`."""
    labels = arms.labels
    if current is None or set(current.labels) != set(labels):
        return {x: total * w for x, w in zip(labels, arms.weights, strict=True)}
    since = max(total - current.counted, 0)
    weights = current.by_label()
    return {x: current.expected.get(x, 0.0) + since * weights[x] for x in labels}


async def bandit_forever(
    redis: Redis,
    keys: Keys,
    settings: DecisionSettings,
    libraries: LibrarySource,
    event_streams: Sequence[str] = (),
) -> None:
    """Update the bandits every `bandit_update_seconds`, on the replica holding the lease
    (contextual fits read goal events from `event_streams`, every shard; empty: one)."""
    lock = SyncLock(redis, keys.bandit_lease, LEASE_SECONDS)
    while True:
        await asyncio.sleep(settings.bandit_update_seconds)
        library = libraries.library
        bandits = bandit_arms(library) if library is not None else []
        if library is None or not bandits:
            continue
        try:
            async with lock.held() as mine:
                if mine:
                    await update_bandits(redis, keys, settings, library, time.time(), bandits)
                    await update_contextual(
                        redis, keys, settings, bandits, time.time(), event_streams
                    )
        except (RedisError, OSError) as exc:
            reraise_if_cancelling(exc)
            log.warning("assembly.bandit.update_failed", error=str(exc))


def compile_policies(raw: dict[str, bytes]) -> dict[str, Policy]:
    """The contextual policies that can be served; a broken one is left out (its experiment
    runs on its bandit weights), logged and counted."""
    out = {}
    for key, doc in raw.items():
        try:
            out[key] = compile_policy(key, doc, None)
        except BrokenParameters as exc:
            metrics.CONTEXTUAL_REFUSED.inc()
            log.warning("assembly.contextual.refused", experiment=key, problem=str(exc))
    return out


class AllocationWatcher:
    """Holds this replica's bandit weights (`allocations`) and keeps them current."""

    def __init__(self, store: AllocationStore, poll_seconds: float) -> None:
        self.store = store
        self.allocations = EMPTY_ALLOCATIONS
        self._poll = poll_seconds
        self._seen = -1

    async def refresh(self) -> bool:
        """Reload when the stored version moved; whether it did."""
        if await self.store.version() == self._seen:
            return False
        version, found, raw = await self.store.load()
        policies = compile_policies(raw)
        self.allocations = Allocations(found, version, policies)
        self._seen = version
        metrics.BANDIT_ALLOCATIONS.set(len(found))
        metrics.CONTEXTUAL_POLICIES.set(len(policies))
        log.info(
            "assembly.bandit.loaded",
            version=version,
            experiments=len(found),
            policies=len(policies),
        )
        return True

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except (RedisError, OSError) as exc:
                reraise_if_cancelling(exc)
                log.warning("assembly.bandit.load_failed", error=str(exc))
            await asyncio.sleep(self._poll)
