"""Admin operations of the decision engine: kill switches, experiment results, rollouts."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import structlog
from redis.exceptions import RedisError

from assembly.exceptions import LibraryNotLoaded, SwitchNotSet, UnknownTarget
from assembly.experiments.assignment import rollout_test
from assembly.experiments.guardrail import describe, rollout_variants
from assembly.experiments.results import experiment_results
from assembly.killswitch import KillSwitch, Scope
from assembly.store import read_counts
from assembly.wiring import DecisionRuntime
from core.errors import StoreUnavailable
from integration.library import Library

log = structlog.get_logger()

STORE_SECONDS = 1.0  # an admin call waits this long for the store, then says it is sick


def _library(runtime: DecisionRuntime) -> Library:
    library = runtime.libraries.library
    if library is None:
        raise LibraryNotLoaded("the content library is not loaded yet; keys cannot be checked")
    return library


def check_target(library: Library, scope: Scope, key: str) -> None:
    """A switch must name something the library has (typos must not pass silently)."""
    if scope == "template":
        known = key in library.templates
    elif scope == "slot":
        known = key in library.slots
    elif scope == "variant":
        known = any(v.key == key for s in library.slots.values() for v in s.variants)
    else:
        known = True
    if not known:
        raise UnknownTarget(f"the library has no {scope} with key {key!r}")


async def set_switch(
    runtime: DecisionRuntime, scope: Scope, key: str, *, by: str, reason: str
) -> KillSwitch:
    if scope != "global":
        check_target(_library(runtime), scope, key)
    switch = KillSwitch(scope, key, by, reason, time.time())
    async with _store("the switch may still be applied when the store recovers"):
        await runtime.switches.set(switch)
        await runtime.watcher.refresh()  # this replica at once; the others on the announcement
    return switch


async def set_global(runtime: DecisionRuntime, *, by: str, reason: str) -> tuple[KillSwitch, bool]:
    """The global switch, in force on this replica at once; whether it is stored already.

    When the store is sick the switch stays in force here, and this replica stores and
    announces it as soon as the store answers again (`SwitchWatcher.refresh`).
    """
    switch = KillSwitch("global", "", by, reason, time.time())
    runtime.watcher.apply_locally(switch)
    try:
        async with asyncio.timeout(STORE_SECONDS):
            await runtime.watcher.refresh()
    except (RedisError, OSError) as exc:  # TimeoutError is an OSError
        log.warning("assembly.kill_switch.not_stored", scope="global", by=by, error=str(exc))
        return switch, False
    return switch, True


async def clear_switch(
    runtime: DecisionRuntime, scope: Scope, key: str, *, by: str, reason: str
) -> KillSwitch:
    unstored = runtime.watcher.local if scope == "global" else None
    if unstored is not None:
        runtime.watcher.apply_locally(None)  # never stored: lifting it needs no store
    try:
        async with _store("the switch may still be lifted when the store recovers"):
            old = await runtime.switches.clear(scope, key, by=by, reason=reason)
            await runtime.watcher.refresh()
    except StoreUnavailable:
        if unstored is None:
            raise
        return unstored
    old = old or unstored
    if old is None:
        what = "the global kill switch is" if scope == "global" else f"{scope} {key!r} has no"
        raise SwitchNotSet(f"{what} not set" if scope == "global" else f"{what} kill switch")
    return old


async def list_switches(runtime: DecisionRuntime, audit: int) -> dict[str, Any]:
    """The switches in force; from this replica's memory when the store does not answer."""
    watcher = runtime.watcher
    stored = True
    entries: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(STORE_SECONDS):
            await watcher.refresh()
            entries = await runtime.switches.audit(audit) if audit > 0 else []
    except (RedisError, OSError) as exc:
        log.warning("assembly.kill_switch.list_from_memory", error=str(exc))
        stored = False
    return {
        "switches": [s.to_json() for s in watcher.board.all()],
        "audit": entries,
        "storeAvailable": stored,
        "unstored": watcher.local.to_json() if watcher.local else None,
    }


@contextlib.asynccontextmanager
async def _store(consequence: str) -> AsyncIterator[None]:
    """Bound a store operation; a sick store becomes a 503 that says what may still happen."""
    try:
        async with asyncio.timeout(STORE_SECONDS):
            yield
    except (RedisError, OSError) as exc:
        raise StoreUnavailable(
            f"the store did not answer ({type(exc).__name__}); {consequence}: check "
            "GET /admin/kill-switches, or retry"
        ) from exc


async def results(runtime: DecisionRuntime, key: str) -> dict[str, Any]:
    return await experiment_results(
        runtime.redis, runtime.keys, key, runtime.libraries.library, runtime.settings
    )


async def rollouts(runtime: DecisionRuntime) -> dict[str, Any]:
    library = _library(runtime)
    found = []
    for slot, variant in rollout_variants(library):
        counts = await read_counts(runtime.redis, runtime.keys, rollout_test(variant))
        found.append(describe(slot, variant, counts, runtime.settings))
    return {"rollouts": found, "guardrailEnabled": runtime.settings.guardrail_enabled}
