"""The rollout guardrail: switch a rolled-out variant off when it converts significantly worse.

A rollout with a share in (0, 1) is measured as a test (`rollout:<variant>`): visitors who saw
the variant (arm 1, counted under the variant key) against visitors who qualified but were held
out by the share (arm 0, counted as `holdout`: what they got instead). Conversions are the
`DECISIONS_GUARDRAIL_GOAL_EVENT` track event. Once both groups have `guardrail_min_sample`
visitors and the one-sided p-value of "the variant converts worse" is below `guardrail_alpha`,
the variant gets an admin kill switch by `guardrail` (logged, audited, listed in
`/admin/kill-switches` and `/admin/rollouts`). It trips once per rollout.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from redis.asyncio import Redis

from assembly import metrics
from assembly.config import DecisionSettings
from assembly.experiments.assignment import HOLDOUT, measured_rollout, rollout_test
from assembly.experiments.stats import one_sided_worse_p, rate
from assembly.killswitch import KillSwitch, KillSwitchStore
from assembly.store import TestCounts, read_counts
from core.redis import Keys
from integration.library import Library
from integration.model import Variant

log = structlog.get_logger()

GUARDRAIL = "guardrail"


@dataclass(frozen=True, slots=True)
class Verdict:
    status: str  # "collecting", "ok", "worse" (trip now), "tripped" (already)
    p_value: float | None


def rollout_variants(library: Library) -> Iterator[tuple[str, Variant]]:
    seen = set()
    for slot in library.slots.values():
        for variant in slot.variants:
            if measured_rollout(variant) and variant.key not in seen:
                seen.add(variant.key)
                yield slot.key, variant


def _group(counts: TestCounts, label: str) -> tuple[int, int]:
    """(visitors, conversions) of one side of the rollout."""
    return counts.visitors.get(label, 0), counts.conversions.get(label, 0)


def judge(counts: TestCounts, variant: Variant, settings: DecisionSettings) -> Verdict:
    held_n, held_c = _group(counts, HOLDOUT)
    in_n, in_c = _group(counts, variant.key)
    p = one_sided_worse_p(held_c, held_n, in_c, in_n)
    if counts.guardrail is not None:
        return Verdict("tripped", p)
    if min(held_n, in_n) < settings.guardrail_min_sample or p is None:
        return Verdict("collecting", p)
    return Verdict("worse" if p < settings.guardrail_alpha else "ok", p)


def describe(
    slot: str, variant: Variant, counts: TestCounts, settings: DecisionSettings
) -> dict[str, Any]:
    """One rollout as `/admin/rollouts` shows it."""
    verdict = judge(counts, variant, settings)

    def group(label: str) -> dict[str, Any]:
        n, c = _group(counts, label)
        return {"visitors": n, "conversions": c, "rate": rate(c, n)}

    return {
        "variant": variant.key,
        "slot": slot,
        "share": variant.rollout,
        "goalEvent": settings.guardrail_goal_event,
        "rolledOut": group(variant.key),
        "heldOut": group(HOLDOUT),
        "pValueWorse": verdict.p_value,
        "status": verdict.status,
        "minSample": settings.guardrail_min_sample,
        "alpha": settings.guardrail_alpha,
        "tripped": counts.guardrail,
    }


async def check_rollouts(
    redis: Redis,
    keys: Keys,
    settings: DecisionSettings,
    library: Library,
    switches: KillSwitchStore,
) -> list[str]:
    """Judge every measured rollout; switch off the significantly worse ones. Their keys."""
    if not settings.guardrail_enabled:
        return []
    tripped = []
    for _, variant in rollout_variants(library):
        counts = await read_counts(redis, keys, rollout_test(variant))
        verdict = judge(counts, variant, settings)
        if verdict.status != "worse":
            continue
        await _trip(redis, keys, switches, variant, counts, verdict)
        tripped.append(variant.key)
    return tripped


async def _trip(
    redis: Redis,
    keys: Keys,
    switches: KillSwitchStore,
    variant: Variant,
    counts: TestCounts,
    verdict: Verdict,
) -> None:
    held_n, held_c = _group(counts, HOLDOUT)
    in_n, in_c = _group(counts, variant.key)
    held, rolled = rate(held_c, held_n) or 0.0, rate(in_c, in_n) or 0.0
    reason = (
        f"conversion {rolled:.2%} rolled out vs {held:.2%} held out "
        f"(visitors {in_n}/{held_n}, "
        f"one-sided p={verdict.p_value:.2g})"
    )
    now = time.time()
    record = {"at": now, "pValue": verdict.p_value, "reason": reason}
    claimed = await redis.hsetnx(
        keys.test_counts(rollout_test(variant)), GUARDRAIL, orjson.dumps(record)
    )
    if not claimed:
        return  # another replica tripped it first
    await switches.set(KillSwitch("variant", variant.key, GUARDRAIL, reason, now))
    metrics.GUARDRAIL_TRIPS.inc()
    log.warning("assembly.guardrail.tripped", variant=variant.key, reason=reason)
