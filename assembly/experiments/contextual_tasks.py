"""Fit the contextual bandits' parameters (one replica, on the bandit schedule, under its lease).

For each running `mode: contextual` experiment: its first exposures per visitor in the decision
log of the last `contextual_window_seconds` (`assembly.learning.data`, the arm as the variant),
each labelled converted when the experiment's goal event followed within
`contextual_attribution_seconds`; the feature specs the ranking model's training would choose
(`assembly.learning.train.feature_specs`, at most `contextual_max_features`); one ridge
posterior per arm (`contextual.fit_arm`); the per-segment summary for results. Below
`contextual_min_exposures` exposures nothing is stored: the plain bandit weights decide.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import structlog
from redis.asyncio import Redis

from assembly import metrics
from assembly.config import DecisionSettings
from assembly.experiments.allocation import AllocationStore
from assembly.experiments.contextual import ArmModel, fit_arm
from assembly.experiments.contextual_params import decode_params, encode_params
from assembly.experiments.contextual_segments import segment_summary
from assembly.learning.data import Bounds, Exposure, label, read_exposures, read_goals
from assembly.learning.features import Encoder, FeatureSpec
from core.redis import Keys
from integration.model import Arms

log = structlog.get_logger()


def arm_shape(keys: set[str]) -> Any:
    """Rewrite a decision-log record so that each contextual experiment's outcome reads as a
    'variant' (its arm label, `control` included) of a 'slot' named after the experiment."""

    def shape(record: dict[str, Any]) -> dict[str, Any]:
        slots = []
        for outcome in record.get("slots", ()):
            test = outcome.get("experiment") or {}
            if outcome.get("source") == "experiment" and test.get("key") in keys:
                slots.append({**outcome, "slot": test["key"], "variant": test.get("variant")})
        return {**record, "slots": slots}

    return shape


async def update_contextual(
    redis: Redis,
    keys: Keys,
    settings: DecisionSettings,
    arms: list[Arms],
    now: float,
    event_streams: Sequence[str] = (),
) -> list[str]:
    """Fit and store the due contextual bandits' parameters; the experiments stored. Goal
    events come from `event_streams` (every shard of the event stream; empty: the one)."""
    store = AllocationStore(redis, keys, settings.bandit_history)
    due = [a for a in arms if a.experiment.mode == "contextual" and a.experiment.goal_event]
    previous = {a.experiment.key: await _params(store, a.experiment.key) for a in due}
    due = [a for a in due if _due(previous[a.experiment.key], settings, now)]
    if not due:
        return []
    since = now - settings.contextual_window_seconds
    bounds = Bounds(
        max_decisions=settings.contextual_max_decisions,
        max_events=settings.contextual_max_events,
        time_budget_seconds=settings.contextual_time_budget_seconds,
    )
    wanted = {a.experiment.key for a in due}
    started = time.perf_counter()
    recorded = await read_exposures(
        redis, keys, since=since, bounds=bounds, shape=arm_shape(wanted)
    )
    goals = await read_goals(
        redis,
        keys,
        goals={a.experiment.goal_event or "" for a in due},
        since=since,
        bounds=bounds,
        recorded=recorded,
        streams=event_streams or None,
    )
    stored = []
    for experiment in due:
        key = experiment.experiment.key
        group = [e for e in recorded.exposures if e.slot == key]
        label(
            group,
            goals[experiment.experiment.goal_event or ""],
            settings.contextual_attribution_seconds,
        )
        read = {"decisions": recorded.decisions_read, "seconds": time.perf_counter() - started}
        if await _store_fit(store, experiment, group, settings, now, read, previous[key]):
            stored.append(key)
    return stored


async def _params(store: AllocationStore, key: str) -> dict[str, Any] | None:
    return decode_params(await store.parameters(key))


def _due(doc: dict[str, Any] | None, settings: DecisionSettings, now: float) -> bool:
    at = doc.get("at") if doc else None
    return not isinstance(at, int | float) or now - at >= settings.bandit_update_seconds / 2


async def _store_fit(
    store: AllocationStore,
    arms: Arms,
    group: list[Exposure],
    settings: DecisionSettings,
    now: float,
    read: dict[str, float],
    previous: dict[str, Any] | None,
) -> bool:
    key = arms.experiment.key
    group = [e for e in group if e.variant in arms.labels]
    if len(group) < settings.contextual_min_exposures:
        log.info("assembly.contextual.too_few", experiment=key, exposures=len(group))
        return False
    started = time.perf_counter()
    specs, models, segments = await asyncio.to_thread(fit_experiment, arms, group, settings)
    fit_seconds = time.perf_counter() - started
    version = int(previous.get("version") or 0) + 1 if previous else 1
    raw = encode_params(
        version=version,
        at=now,
        specs=specs,
        arms=models,
        segments=segments,
        floor=settings.bandit_min_exploration,
        scale=settings.contextual_exploration_scale,
        extra={
            "exposures": len(group),
            "conversions": sum(e.converted for e in group),
            "read": read,
            "fitSeconds": fit_seconds,
        },
    )
    await store.put_parameters(key, raw)
    metrics.CONTEXTUAL_FITS.inc()
    log.info(
        "assembly.contextual.fitted",
        experiment=key,
        version=version,
        exposures=len(group),
        decisions_read=read["decisions"],
        read_seconds=round(read["seconds"], 3),
        fit_seconds=round(fit_seconds, 3),
    )
    return True


def fit_experiment(
    arms: Arms, group: list[Exposure], settings: DecisionSettings
) -> tuple[list[FeatureSpec], list[ArmModel], list[dict[str, Any]]]:
    """Specs, one posterior per arm (in the arms' order), and the segment summary."""
    from assembly.learning.train import feature_specs  # scikit-learn: only where fits run

    specs = feature_specs(group, settings.contextual_max_features)
    encoder = Encoder(specs)
    size = len(specs) + 1
    rows = [[1.0, *encoder.dense(e.visitor)] for e in group]
    models = []
    for arm in arms.labels:
        mine = [i for i, e in enumerate(group) if e.variant == arm]
        models.append(
            fit_arm(
                arm,
                [rows[i] for i in mine],
                [float(group[i].converted) for i in mine],
                settings.contextual_ridge,
                size,
            )
        )
    segments = segment_summary(specs, models, [(e, r) for e, r in zip(group, rows, strict=True)])
    return specs, models, segments
