"""`cli.py train` end to end: read, label, fit, seal, publish (off the hot path)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from redis.asyncio import Redis

from assembly.learning.artifact import encode
from assembly.learning.config import LearningSettings
from assembly.learning.data import Bounds, label, read_exposures, read_goals
from assembly.learning.exceptions import NothingToTrain
from assembly.learning.store import ModelStore
from assembly.learning.train import FitLimits, artifact_body, feature_specs, fit_slots
from core.progress import Progress, no_progress
from core.redis import Keys

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class TrainRequest:
    goal: str
    window_seconds: float
    publish: bool = True


def bounds_of(settings: LearningSettings) -> Bounds:
    return Bounds(
        max_decisions=settings.max_decisions,
        max_events=settings.max_events,
        time_budget_seconds=settings.time_budget_seconds,
    )


async def train(
    redis: Redis,
    keys: Keys,
    request: TrainRequest,
    settings: LearningSettings,
    *,
    now: float | None = None,
    streams: Sequence[str] | None = None,
    progress: Progress = no_progress,
) -> dict[str, Any]:
    """The summary of the run; the artifact is published unless `request.publish` is false.
    `streams`: the event stream's shards (default: one)."""
    started = time.monotonic()
    since = max(0.0, (time.time() if now is None else now) - request.window_seconds)
    bounds = bounds_of(settings)
    recorded = await read_exposures(redis, keys, since=since, bounds=bounds, progress=progress)
    goals = await read_goals(
        redis,
        keys,
        goals=[request.goal],
        since=since,
        bounds=bounds,
        recorded=recorded,
        streams=streams,
        progress=progress,
    )
    label(recorded.exposures, goals[request.goal], settings.attribution_seconds)
    progress("fit", 0, 1)
    specs = feature_specs(recorded.exposures, settings.max_features)
    limits = FitLimits(settings.min_exposures, settings.min_conversions, settings.max_features)
    slots = fit_slots(recorded.exposures, specs, limits)
    progress("fit", 1, 1)
    if not slots:
        raise NothingToTrain(
            f"no slot has a variant with {settings.min_exposures} exposures and "
            f"{settings.min_conversions} conversions of {request.goal!r} "
            f"({len(recorded.exposures)} exposures, {recorded.goals} goal events read)"
        )
    store = ModelStore(redis, keys)
    version = await store.next_version() if request.publish else 0
    body = artifact_body(
        version=max(version, 1),
        goal=request.goal,
        attribution=settings.attribution_seconds,
        specs=specs,
        slots=slots,
    )
    artifact = encode(body)
    if request.publish:
        await store.publish(version, artifact, keep=settings.keep_versions)
    summary = {
        "version": version if request.publish else None,
        "published": request.publish,
        "goal": request.goal,
        "decisionsRead": recorded.decisions_read,
        "eventsRead": recorded.events_read,
        "goalEvents": recorded.goals,
        "exposures": len(recorded.exposures),
        "converted": sum(e.converted for e in recorded.exposures),
        "features": len(specs),
        "artifactBytes": len(artifact),
        "truncated": recorded.truncated,
        "bounds": {
            "maxDecisions": bounds.max_decisions,
            "maxEvents": bounds.max_events,
            "timeBudgetSeconds": bounds.time_budget_seconds,
        },
        "slots": {
            key: {
                "auc": slot["auc"],
                "exposures": slot["exposures"],
                "variants": {
                    k: {"exposures": v["exposures"], "conversions": v["conversions"]}
                    for k, v in slot["variants"].items()
                },
            }
            for key, slot in slots.items()
        },
        "seconds": round(time.monotonic() - started, 3),
    }
    log.info(
        "learning.train.done",
        version=summary["version"],
        slots=sorted(slots),
        seconds=summary["seconds"],
    )
    return summary
