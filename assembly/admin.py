"""Admin operations of the decision engine: kill switches, experiment results, rollouts."""

from __future__ import annotations

import time
from typing import Any

from assembly.exceptions import LibraryNotLoaded, SwitchNotSet, UnknownTarget
from assembly.experiments import rollout_test
from assembly.guardrail import describe, rollout_variants
from assembly.killswitch import KillSwitch, Scope
from assembly.results import experiment_results
from assembly.runtime import DecisionRuntime
from assembly.store import read_counts
from integration.library import Library


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
    await runtime.switches.set(switch)
    await runtime.watcher.refresh()  # this replica at once; the others on the announcement
    return switch


async def clear_switch(
    runtime: DecisionRuntime, scope: Scope, key: str, *, by: str, reason: str
) -> KillSwitch:
    old = await runtime.switches.clear(scope, key, by=by, reason=reason)
    if old is None:
        what = "the global kill switch is" if scope == "global" else f"{scope} {key!r} has no"
        raise SwitchNotSet(f"{what} not set" if scope == "global" else f"{what} kill switch")
    await runtime.watcher.refresh()
    return old


async def list_switches(runtime: DecisionRuntime, audit: int) -> dict[str, Any]:
    await runtime.watcher.refresh()
    return {
        "switches": [s.to_json() for s in runtime.watcher.board.all()],
        "audit": await runtime.switches.audit(audit),
    }


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
