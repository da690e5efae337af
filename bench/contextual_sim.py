"""Contextual bandit simulation: planted per-segment truth, through the real service.

`uv run python -m bench.contextual_sim` (options: `--visitors`, `--wave`, `--seed`).

A private `redis-server` and the service (`python cli.py serve` on the demo space; the bandit
schedule sped up as in `bench.bandit_sim`). The demo's `home.cta` experiment gets four arms
whose true conversion rates, per segment, only this script knows:

| segment (its CDP audience in the request) | share | control | `cta-b` | `cta-c` | `cta-d` |
| --- | --- | --- | --- | --- | --- |
| cart abandoners (`abandoned_cart`) | 30% | 4% | 12% (3x) | 4% | 2% |
| video watchers (`video_watchers`) | 30% | 4% | 4% | 10% | 2% |
| everyone else | 40% | 5% | 4% | 3.5% | 2.5% |

`cta-b` plays the discount hero, `cta-c` the video hero.

`cta-d` is worse for everyone; the best single arm (discount, 6.4%) is not the best for anyone
but cart abandoners; the oracle shows each segment its best arm (8.6%).

Three runs of `--visitors` fresh visitors each, on the same slot, arms and population:
**uniform** (`mode: ab`, equal split), **bandit** (`mode: bandit`) and **contextual**
(`mode: contextual`). Each visitor `POST /v1/assemble`s with their audiences in the request
context, converts with the true rate of the arm shown for their segment, and converters send
"Order Completed" through `POST /v1/batch`. After each wave of `--wave` visitors the script
waits until the conversions are counted and (bandit, contextual) until new weights or
parameters fitted on them are stored and loaded, so that one wave = one update period.

Reported per run: the expected conversion rate of what was shown (true rates, without the coin
flips' noise) against the oracle, regret = sum over visitors of (their segment's best rate - the
shown arm's rate) overall and per segment, the per-segment share of the segment's best arm in
the last fifth, and the service's own per-segment regret estimate (contextual). Printed and
written to `bench/results/contextual-<UTC timestamp>.json`; nothing is asserted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import httpx
from redis.asyncio import Redis

from assembly.experiments.allocation import AllocationStore
from assembly.experiments.contextual_params import decode_params
from bench.assemble import git_revision
from bench.bandit_sim import KEYS, Simulation, publish
from bench.sim_service import (
    Options,
    content_items,
    parse_options,
    results_document,
    serve_and_run,
    until_live,
    write_results,
)

ARMS = ("control", "cta-b", "cta-c", "cta-d")
SEGMENTS = {  # segment -> (audience, share, true rate per arm)
    "cart": ("abandoned_cart", 0.3, {"control": 0.04, "cta-b": 0.12, "cta-c": 0.04, "cta-d": 0.02}),
    "video": (
        "video_watchers",
        0.3,
        {"control": 0.04, "cta-b": 0.04, "cta-c": 0.10, "cta-d": 0.02},
    ),
    "other": (None, 0.4, {"control": 0.05, "cta-b": 0.04, "cta-c": 0.035, "cta-d": 0.025}),
}
MODES = ("ab", "bandit", "contextual")


def best_rate(segment: str) -> float:
    return max(SEGMENTS[segment][2].values())


def best_arm(segment: str) -> str:
    rates = SEGMENTS[segment][2]
    return max(rates, key=lambda arm: rates[arm])


ORACLE = sum(share * best_rate(s) for s, (_, share, _) in SEGMENTS.items())
SINGLE_BEST = max(sum(share * rates[a] for _, share, rates in SEGMENTS.values()) for a in ARMS)


@dataclass(slots=True)
class SegmentTally:
    visitors: int = 0
    expected: float = 0.0
    regret: float = 0.0
    shown: dict[str, int] = field(default_factory=dict)
    best_last_fifth: int = 0
    last_fifth: int = 0


@dataclass(slots=True)
class ContextRun:
    mode: str
    experiment: str
    visitors: int = 0
    expected_conversions: float = 0.0
    regret: float = 0.0
    conversions_sent: int = 0
    conversions_counted: int = 0
    updates: int = 0
    seconds: float = 0.0
    tail_visitors: int = 0
    tail_expected: float = 0.0
    segments: dict[str, SegmentTally] = field(default_factory=dict)
    service_results: dict[str, Any] = field(default_factory=dict)

    def tally(self, segment: str, label: str, tail: bool) -> None:
        rate = SEGMENTS[segment][2][label]
        seg = self.segments.setdefault(segment, SegmentTally())
        for target in (self, seg):
            target.visitors += 1
            target.regret += best_rate(segment) - rate
        self.expected_conversions += rate
        seg.expected += rate
        seg.shown[label] = seg.shown.get(label, 0) + 1
        if tail:
            self.tail_visitors += 1
            self.tail_expected += rate
            seg.last_fifth += 1
            seg.best_last_fifth += label == best_arm(segment)


class ContextualSimulation(Simulation):
    def segment(self) -> str:
        draw, start = self.rng.random(), 0.0
        for name, (_, share, _) in SEGMENTS.items():
            start += share
            if draw < start:
                return name
        return "other"

    async def show(self, visitor: str, experiment: str, segment: str) -> str:
        audience = SEGMENTS[segment][0]
        return await self.shown(visitor, experiment, {"audiences": [audience] if audience else []})

    async def run_mode(self, experiment: str, mode: str) -> ContextRun:
        result = ContextRun(mode, experiment)
        started = time.perf_counter()
        total, wave = self.options.visitors, self.options.wave
        for first in range(0, total, wave):
            ids = [f"{experiment}-v{i}" for i in range(first, min(first + wave, total))]
            segments = [self.segment() for _ in ids]
            labels = await asyncio.gather(
                *(self.show(v, experiment, s) for v, s in zip(ids, segments, strict=True))
            )
            converters = []
            for index, (v, s, x) in enumerate(zip(ids, segments, labels, strict=True), first):
                result.tally(s, x, index >= total * 4 // 5)
                if self.rng.random() < SEGMENTS[s][2][x]:
                    converters.append(v)
            await asyncio.sleep(0.05)  # the off-path writer stores the assignments
            await self.convert(converters)
            result.conversions_sent += len(converters)
            await self.wait_for(experiment, result.conversions_sent, update=mode == "bandit")
            if mode == "contextual":
                await self.fitted(experiment, first + len(ids), result.conversions_sent)
                result.updates += 1
        result.conversions_counted = await self.counted(experiment)
        result.seconds = time.perf_counter() - started
        result.service_results = await self.contextual_results(experiment)
        return result

    async def fitted(self, experiment: str, visitors: int, conversions: int) -> None:
        """Until parameters fitted on every visitor and conversion so far are stored (and,
        a poll later, loaded); the first waits may end with none (too few exposures)."""
        store = AllocationStore(self.redis, KEYS)
        deadline = time.monotonic() + 60
        while True:
            doc = decode_params(await store.parameters(experiment))
            if doc and doc.get("exposures", 0) >= visitors and doc["conversions"] >= conversions:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{experiment}: no parameters on {visitors} visitors in 60 s")
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.25)

    async def contextual_results(self, experiment: str) -> dict[str, Any]:
        document = await results_document(self.client, experiment)
        contextual = document.get("contextual") or {}
        return {
            "srm": document["srm"],
            "bandit_weights": (document.get("bandit") or {}).get("weights"),
            "contextual_version": contextual.get("version"),
            "contextual_features": contextual.get("features"),
            "contextual_regret_estimate": contextual.get("regret"),
            "contextual_last_fit": {
                "read": contextual.get("read"),
                "fitSeconds": contextual.get("fitSeconds"),
            },
            "contextual_segments": [
                {
                    "segment": s["segment"],
                    "visitors": s["visitors"],
                    "bestArm": s["bestArm"],
                    "shares": {a: round(v["share"], 3) for a, v in s["arms"].items()},
                    "regret": s["regret"]["conversions"],
                }
                for s in contextual.get("segments", [])
            ],
        }


async def simulate(base: str, redis_url: str, options: Options) -> list[ContextRun]:
    redis = Redis.from_url(redis_url)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            simulation = ContextualSimulation(client, redis, options)
            runs = []
            for revision, mode in enumerate(MODES, start=10):
                key = f"ctx-{mode}"
                await publish(redis, content_items(key, mode, revision, ARMS[1:]))
                await until_live(partial(simulation.show, experiment=key, segment="other"), key)
                simulation.rng.seed(options.seed)  # the same population for every mode
                runs.append(await simulation.run_mode(key, mode))
            return runs
    finally:
        await redis.aclose()


def report(runs: list[ContextRun], options: Options) -> dict[str, Any]:
    rows = []
    for run in runs:
        rate = run.expected_conversions / max(run.visitors, 1)
        rows.append(
            {
                **asdict(run),
                "rate": rate,
                "rate_vs_oracle": rate / ORACLE,
                "rate_last_fifth_vs_oracle": run.tail_expected / max(run.tail_visitors, 1) / ORACLE,
                "segments": {
                    name: {
                        **asdict(seg),
                        "rate": seg.expected / max(seg.visitors, 1),
                        "best_share_last_fifth": seg.best_last_fifth / max(seg.last_fifth, 1),
                    }
                    for name, seg in sorted(run.segments.items())
                },
            }
        )
    uniform = rows[0]["regret"]
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "revision": git_revision(),
        "options": asdict(options),
        "truth": {name: {"share": s, "rates": r} for name, (_, s, r) in SEGMENTS.items()},
        "oracle_rate": ORACLE,
        "single_best_arm_rate": SINGLE_BEST,
        "runs": rows,
        "regret_vs_uniform": {row["mode"]: row["regret"] / uniform for row in rows},
    }


def print_report(doc: dict[str, Any]) -> None:
    print(f"contextual simulation, {doc['date']}, revision {doc['revision']}")
    print(
        f"oracle (per-segment best) {doc['oracle_rate']:.2%}; "
        f"best single arm {doc['single_best_arm_rate']:.2%}"
    )
    for run in doc["runs"]:
        print(
            f"{run['mode']:>10}: {run['visitors']} visitors, rate {run['rate']:.2%} "
            f"({run['rate_vs_oracle']:.1%} of oracle), regret {run['regret']:.1f} "
            f"({doc['regret_vs_uniform'][run['mode']]:.2f}x uniform), last fifth "
            f"{run['rate_last_fifth_vs_oracle']:.1%} of oracle, counted "
            f"{run['conversions_counted']}/{run['conversions_sent']}, {run['seconds']:.0f} s"
        )
        for name, seg in run["segments"].items():
            print(
                f"{'':>12}{name:>6}: rate {seg['rate']:.2%}, regret {seg['regret']:.1f}, "
                f"best arm in the last fifth {seg['best_share_last_fifth']:.1%}, "
                f"shown {seg['shown']}"
            )
        if run["mode"] == "contextual":
            print(f"{'':>12}service: {run['service_results']}")


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_options(
        argv, module="bench.contextual_sim", doc=__doc__, defaults=Options(8_000, 400, 17)
    )
    runs = serve_and_run(
        lambda base, redis_url: simulate(base, redis_url, options),
        DECISIONS_CONTEXTUAL_MIN_EXPOSURES="100",
        DECISIONS_CONTEXTUAL_MAX_DECISIONS="200000",
        DECISIONS_CONTEXTUAL_TIME_BUDGET_SECONDS="60",
        DECISIONS_LOG_MAX_LEN="200000",
    )
    doc = report(runs, options)
    print_report(doc)
    write_results(doc, "contextual")


if __name__ == "__main__":
    main()
