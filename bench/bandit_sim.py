"""Bandit simulation: a population with known conversion rates, through the real service.

`uv run python -m bench.bandit_sim` (options: `--visitors`, `--wave`, `--seed`).

A private `redis-server` and the service (`python cli.py serve` on the demo space, its bandit
schedule sped up: `DECISIONS_BANDIT_UPDATE_SECONDS=0.5`, `DECISIONS_BANDIT_POLL_SECONDS=0.1`;
a read budget of 1 s, so that a busy machine does not turn page views degraded).
The demo's `home.cta` experiment gets three arms, whose true conversion rates only this script
knows: `control` 5%, `cta-b` 2.5% (worse for everyone), `cta-c` 9% (the best).

Two runs of `--visitors` fresh visitors each, on the same slot and arms:
- **uniform**: `mode: ab` with the equal split (what an A/B test costs while it runs);
- **bandit**: `mode: bandit`, Thompson sampling, 5% exploration floor per arm.
Visitors come in waves of `--wave`: each one `POST /v1/assemble` (the arm it is shown is the
answer's), converts with its arm's true rate, and the converters send an "Order Completed"
track event through `POST /v1/batch` (the tracking API; the service's consumer attributes it to
the arm). After a wave the script waits until every conversion is counted and, in the bandit
run, until the schedule has stored new weights, so that one wave = one update period.

Reported per run: conversions (counted by the service), the conversion rate of the arms shown
(the true rates of what each visitor saw: the expectation, without the coin flips' noise),
regret = sum over visitors of (best rate - the shown arm's rate), the share of traffic on the
best arm in the last fifth of the run, and the service's own results (P(best), regret estimate,
SRM p-value). The oracle shows the best arm to everyone. Results are printed and written to
`bench/results/bandit-<UTC timestamp>.json`; nothing is asserted.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import httpx
from redis.asyncio import Redis

from assembly.experiments.allocation import AllocationStore
from bench.assemble import git_revision
from bench.sim_service import (
    WRITE_KEY,
    Options,
    content_items,
    parse_options,
    results_document,
    serve_and_run,
    until_live,
    write_results,
)
from core.redis import Keys
from integration.normalize import Changes, normalize_items
from integration.store import ContentStore, writes_of

KEYS = Keys("mb")
SLOT = "home.cta"
GOAL = "Order Completed"
RATES = {"control": 0.05, "cta-b": 0.025, "cta-c": 0.09}
BEST = max(RATES, key=lambda k: RATES[k])
ARMS = ("cta-b", "cta-c")  # beside control
CONCURRENCY = 8


@dataclass(slots=True)
class RunResult:
    mode: str
    experiment: str
    visitors: int = 0
    shown: dict[str, int] = field(default_factory=dict)
    conversions_sent: int = 0
    conversions_counted: int = 0
    expected_conversions: float = 0.0
    regret: float = 0.0
    shown_last_fifth: dict[str, int] = field(default_factory=dict)
    weight_updates: int = 0
    seconds: float = 0.0
    service_results: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.expected_conversions / max(self.visitors, 1)

    @property
    def rate_last_fifth(self) -> float:
        """The true rate of the arms shown to the last fifth of the visitors."""
        tail = self.shown_last_fifth
        return sum(RATES[x] * n for x, n in tail.items()) / max(sum(tail.values()), 1)

    @property
    def best_share_last_fifth(self) -> float:
        return self.shown_last_fifth.get(BEST, 0) / max(sum(self.shown_last_fifth.values()), 1)


async def publish(redis: Redis, items: list[dict[str, Any]]) -> None:
    changes = normalize_items(items)
    await ContentStore(redis, KEYS).write(writes_of(Changes(changes.upserts, [])))


class Simulation:
    def __init__(self, client: httpx.AsyncClient, redis: Redis, options: Options) -> None:
        self.client = client
        self.redis = redis
        self.options = options
        self.rng = random.Random(options.seed)
        self.gate = asyncio.Semaphore(CONCURRENCY)

    async def shown(
        self, visitor: str, experiment: str, context: dict[str, Any] | None = None
    ) -> str:
        """The arm `visitor` is shown on home.cta; `context` goes in the request."""
        body: dict[str, Any] = {"template": "home", "user": {"id": visitor}}
        body["sessionId"] = f"s-{visitor}"
        if context is not None:
            body["context"] = context
        async with self.gate:
            response = await self.client.post("/v1/assemble", json=body)
        response.raise_for_status()
        slot = next(s for s in response.json()["slots"] if s["slot"] == SLOT)
        if slot.get("experiment", {}).get("key") != experiment:
            raise RuntimeError(f"{visitor} was not bucketed in {experiment}: {slot['reason']}")
        label: str = slot["experiment"]["variant"]
        return label

    async def convert(self, visitors: list[str]) -> None:
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        events = [
            {"type": "track", "event": GOAL, "userId": v, "timestamp": now, "messageId": f"o-{v}"}
            for v in visitors
        ]
        for start in range(0, len(events), 100):
            body = {"writeKey": WRITE_KEY, "batch": events[start : start + 100]}
            response = await self.client.post("/v1/batch", json=body)
            response.raise_for_status()

    async def counted(self, experiment: str) -> int:
        row: Any = await self.redis.hgetall(KEYS.test_counts(experiment))
        return sum(int(v) for k, v in row.items() if k.decode().endswith(":conversions"))

    async def wait_for(self, experiment: str, conversions: int, *, update: bool) -> None:
        """Until the wave's conversions are counted, then (bandit) until weights computed
        after that are stored and loaded."""
        deadline = time.monotonic() + 30
        while await self.counted(experiment) < conversions:
            self._check(deadline, experiment)
            await asyncio.sleep(0.02)
        if not update:
            return
        store = AllocationStore(self.redis, KEYS)
        version = await store.version()
        while await store.version() <= version:
            self._check(deadline, experiment)
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.25)  # the replica's next poll (every 0.1 s) loads them

    @staticmethod
    def _check(deadline: float, experiment: str) -> None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{experiment}: conversions or weights did not arrive in 30 s")

    async def run(self, experiment: str, mode: str) -> RunResult:
        result = RunResult(mode, experiment)
        started = time.perf_counter()
        store = AllocationStore(self.redis, KEYS)
        for first in range(0, self.options.visitors, self.options.wave):
            ids = [f"{experiment}-v{i}" for i in range(first, first + self.options.wave)]
            labels = await asyncio.gather(*(self.shown(v, experiment) for v in ids))
            converters = [v for v, x in zip(ids, labels, strict=True) if self._converts(x)]
            self._tally(result, labels, first)
            await asyncio.sleep(0.05)  # the off-path writer stores the assignments
            await self.convert(converters)
            result.conversions_sent += len(converters)
            await self.wait_for(experiment, result.conversions_sent, update=mode == "bandit")
        result.conversions_counted = await self.counted(experiment)
        result.weight_updates = len(await store.history(experiment))
        result.seconds = time.perf_counter() - started
        result.service_results = await self.results(experiment)
        return result

    def _converts(self, label: str) -> bool:
        return self.rng.random() < RATES[label]

    def _tally(self, result: RunResult, labels: list[str], first: int) -> None:
        for index, label in enumerate(labels, start=first):
            result.visitors += 1
            result.shown[label] = result.shown.get(label, 0) + 1
            result.expected_conversions += RATES[label]
            result.regret += RATES[BEST] - RATES[label]
            if index >= self.options.visitors * 4 // 5:
                tail = result.shown_last_fifth
                tail[label] = tail.get(label, 0) + 1

    async def results(self, experiment: str) -> dict[str, Any]:
        document = await results_document(self.client, experiment)
        bandit = document.get("bandit") or {}
        return {
            "srmPValue": document["srm"]["pValue"],
            "srmMismatch": document["srm"]["mismatch"],
            "chanceToBeBest": bandit.get("chanceToBeBest"),
            "regretEstimate": bandit.get("regret"),
            "weightsNow": bandit.get("weights"),
        }


async def simulate(base: str, redis_url: str, options: Options) -> list[RunResult]:
    redis = Redis.from_url(redis_url)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            simulation = Simulation(client, redis, options)
            runs = []
            for revision, (key, mode) in enumerate(
                (("sim-uniform", "ab"), ("sim-bandit", "bandit")), start=10
            ):
                await publish(redis, content_items(key, mode, revision, ARMS))
                await until_live(partial(simulation.shown, experiment=key), key)
                runs.append(await simulation.run(key, mode))
            return runs
    finally:
        await redis.aclose()


def report(runs: list[RunResult], options: Options) -> dict[str, Any]:
    oracle = RATES[BEST]
    rows = []
    for run in runs:
        rows.append(
            {
                **asdict(run),
                "rate": run.rate,
                "rate_vs_oracle": run.rate / oracle,
                "rate_last_fifth": run.rate_last_fifth,
                "rate_last_fifth_vs_oracle": run.rate_last_fifth / oracle,
                "best_share_last_fifth": run.best_share_last_fifth,
                "counted_rate": run.conversions_counted / max(run.visitors, 1),
            }
        )
    uniform, bandit = rows
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "revision": git_revision(),
        "options": asdict(options),
        "rates": RATES,
        "oracle_rate": oracle,
        "runs": rows,
        "bandit_regret_vs_uniform": bandit["regret"] / uniform["regret"],
    }


def print_report(doc: dict[str, Any]) -> None:
    print(f"bandit simulation, {doc['date']}, revision {doc['revision']}")
    print(f"true rates {doc['rates']}; oracle rate {doc['oracle_rate']:.2%}")
    for run in doc["runs"]:
        print(
            f"{run['mode']:>7}: {run['visitors']} visitors, shown {run['shown']}, "
            f"rate {run['rate']:.2%} ({run['rate_vs_oracle']:.1%} of oracle), "
            f"counted {run['conversions_counted']}/{run['conversions_sent']} conversions, "
            f"regret {run['regret']:.1f}, last fifth: best-arm share "
            f"{run['best_share_last_fifth']:.1%}, rate {run['rate_last_fifth']:.2%} "
            f"({run['rate_last_fifth_vs_oracle']:.1%} of oracle), "
            f"updates {run['weight_updates']}, "
            f"{run['seconds']:.0f} s"
        )
        print(f"         service: {run['service_results']}")
    print(f"bandit regret / uniform regret: {doc['bandit_regret_vs_uniform']:.2f}")


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_options(
        argv, module="bench.bandit_sim", doc=__doc__, defaults=Options(10_000, 250, 13)
    )
    runs = serve_and_run(lambda base, redis_url: simulate(base, redis_url, options))
    doc = report(runs, options)
    print_report(doc)
    write_results(doc, "bandit")


if __name__ == "__main__":
    main()
