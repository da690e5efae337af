"""Simulation with a planted ground truth: does the ranking model pick the right hero per segment?

Run from the repository root (`uv run python -m bench.model_sim`, `make bench-learning-model`);
not part of the test suite. A private `redis-server` on a free 127.0.0.1 port and `python
cli.py serve` on the demo space; all traffic goes through the real tracking API
(`POST /v1/batch`, basic auth with a write key) and `POST /v1/assemble` over loopback HTTP.

Ground truth (the chance to place an order after seeing the home hero):

| hero | everyone | cart abandoners | video watchers |
| --- | --- | --- | --- |
| `hero-cart` (the discount hero) | 0.08 | 0.24 (3x) | 0.08 |
| `hero-video` | 0.05 | 0.05 | 0.15 |
| `hero-returning` (worse for everyone) | 0.03 | 0.03 | 0.03 |

30 % of visitors abandon a cart (`Product Added` two hours ago, no order: `signals.cartAbandoned`),
25 % watch videos (`Video Clicked` with category `video`: `signals.engagement.video`), both
independently; a visitor in both segments converts best on the discount hero.

1. **Explore.** The three heroes are the arms of a running experiment (even split), so exposures
   are randomized. `--explore` visitors send their events, are assembled once, and place an
   order with their planted chance (a `track` through the tracking API).
2. **Train.** `cli.py train --goal "Order Completed"` on what the service logged; its held-out
   AUC is reported. `cli.py insights` runs on the same history: the planted triggers must be in
   its top three candidates.
3. **Exploit.** The heroes are republished without the experiment, the slot asks for model
   choice (`modelThreshold` 0.2), and `--exploit` fresh visitors are assembled. Reported: the
   share of visitors shown their segment's best hero, per segment, and the expected conversion
   rate of what they were shown against a uniform split and an oracle (the truth's best hero).

Results are printed and written to `bench/results/model-sim-<UTC timestamp>.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from redis.asyncio import Redis
from sklearn.metrics import roc_auc_score

from bench.assemble import clean_env, redis_server, spawned, wait_ready
from bench.report import save_result
from core.redis import Keys
from integration.normalize import Changes, normalize_items
from integration.store import ContentStore, writes_of
from tests.support.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "templates" / "demo-space.json"
HOST = "127.0.0.1"
WRITE_KEY = "sim-write-key"
GOAL = "Order Completed"
HEROES = ("hero-cart", "hero-video", "hero-returning")
THRESHOLD = 0.2
CONCURRENCY = 8


def truth(hero: str, cart: bool, video: bool) -> float:
    if hero == "hero-cart":
        return 0.24 if cart else 0.08
    if hero == "hero-video":
        return 0.15 if video else 0.05
    return 0.03


def best_hero(cart: bool, video: bool) -> str:
    return max(HEROES, key=lambda h: truth(h, cart, video))


def segment(cart: bool, video: bool) -> str:
    if cart and video:
        return "cart+video"
    return "cart" if cart else ("video" if video else "others")


@dataclass(frozen=True, slots=True)
class Person:
    user: str
    cart: bool
    video: bool


# ---------------------------------------------------------------- content


def _demo_items() -> dict[str, dict[str, Any]]:
    items = json.loads(DEMO.read_text())["sync"]["items"]
    return {item["sys"]["id"]: item for item in items}


def _revised(item: dict[str, Any], revision: int, **fields: Any) -> dict[str, Any]:
    out = copy.deepcopy(item)
    for name, value in fields.items():
        if value is None:
            out["fields"].pop(name, None)
        else:
            out["fields"][name] = {"en-US": value}
    out["sys"]["revision"] = item["sys"]["revision"] + revision
    out["sys"]["updatedAt"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return out


def _link(entry_id: str) -> dict[str, Any]:
    return {"sys": {"type": "Link", "linkType": "Entry", "id": entry_id}}


def content(explore: bool) -> list[dict[str, Any]]:
    """The home hero's three variants at one priority, for everyone: arms of an even experiment
    (`explore`), or plain variants with the slot asking for model choice."""
    demo = _demo_items()
    revision = 1 if explore else 2
    experiment = _revised(
        demo["exp-hero-headline-test"],
        revision,
        key="sim-hero",
        name="Simulation: hero exploration",
        seed="sim-hero",
        namespace=None,
        controlWeight=0,
        status="running" if explore else "stopped",
    )
    experiment["sys"]["id"] = "exp-sim-hero"
    variants = [
        _revised(
            demo[f"var-{hero}"],
            revision,
            audiences=[],
            priority=0,
            experiment=_link("exp-sim-hero") if explore else None,
            weight=[0.34, 0.33, 0.33][i] if explore else None,
        )
        for i, hero in enumerate(HEROES)
    ]
    slot = _revised(demo["slot-home-hero"], revision, modelThreshold=None if explore else THRESHOLD)
    return [experiment, *variants, slot]


async def publish(redis_url: str, items: list[dict[str, Any]]) -> None:
    """Write content as a sync page would; the service reloads on the announcement."""
    redis = Redis.from_url(redis_url)
    try:
        changes = normalize_items(items)
        await ContentStore(redis, Keys()).write(writes_of(Changes(changes.upserts, [])))
    finally:
        await redis.aclose()


# ---------------------------------------------------------------- traffic


def people(count: int, rng: random.Random, tag: str) -> list[Person]:
    return [Person(f"sim-{tag}-{i}", rng.random() < 0.3, rng.random() < 0.25) for i in range(count)]


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def history(person: Person, now: float) -> list[dict[str, Any]]:
    """The behaviour before the page view, in one visit two hours earlier: two pages, maybe a
    product added to the cart (never ordered then), maybe two videos watched."""
    events: list[dict[str, Any]] = [
        {"type": "page", "userId": person.user, "timestamp": _iso(now - 7200 - 60 * k)}
        for k in range(2)
    ]
    if person.cart:
        events.append(
            {
                "type": "track",
                "event": "Product Added",
                "userId": person.user,
                "timestamp": _iso(now - 7200),
                "properties": {"product_id": "sku-1001"},
            }
        )
    if person.video:
        events += [
            {
                "type": "track",
                "event": "Video Clicked",
                "userId": person.user,
                "timestamp": _iso(now - 7200 + 30 + k),
                "properties": {"category": "video"},
            }
            for k in range(2)
        ]
    return events


class Traffic:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.limit = asyncio.Semaphore(CONCURRENCY)

    async def batch(self, events: list[dict[str, Any]]) -> None:
        for start in range(0, len(events), 400):
            body = {"batch": events[start : start + 400]}
            response = await self.client.post("/v1/batch", json=body, auth=(WRITE_KEY, ""))
            response.raise_for_status()

    async def hero(self, person: Person) -> dict[str, Any]:
        async with self.limit:
            body = {"template": "home", "user": {"id": person.user}}
            response = await self.client.post("/v1/assemble", json=body)
            response.raise_for_status()
            slots = {s["slot"]: s for s in response.json()["slots"]}
            return dict(slots["home.hero"])


async def settled(redis_url: str, within: float = 120.0) -> None:
    """Wait until the stream consumer has applied everything (no backlog, no pending)."""
    redis = Redis.from_url(redis_url)
    keys = Keys()
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            groups = await redis.xinfo_groups(keys.events_stream)
            if groups and all((g.get("lag") or 0) == 0 and g["pending"] == 0 for g in groups):
                return
            await asyncio.sleep(0.2)
    finally:
        await redis.aclose()
    raise RuntimeError("the stream consumer did not catch up")


async def expose(traffic: Traffic, redis_url: str, crowd: Sequence[Person]) -> list[str]:
    now = time.time()
    await traffic.batch([e for p in crowd for e in history(p, now)])
    await settled(redis_url)
    answers = await asyncio.gather(*(traffic.hero(p) for p in crowd))
    return [a["variant"] or "baseline" for a in answers]


async def convert(
    traffic: Traffic,
    crowd: Sequence[Person],
    shown: Sequence[str],
    rng: random.Random,
    outcomes: list[tuple[float, bool]],
) -> int:
    """Place the planted orders; `outcomes` learns (true chance, converted) per exposure."""
    orders = []
    for person, hero in zip(crowd, shown, strict=True):
        chance = truth(hero, person.cart, person.video)
        converted = rng.random() < chance
        outcomes.append((chance, converted))
        if converted:
            orders.append(
                {
                    "type": "track",
                    "event": GOAL,
                    "userId": person.user,
                    "properties": {"revenue": 20},
                }
            )
    await traffic.batch(orders)
    return len(orders)


# ---------------------------------------------------------------- the commands


def cli(redis_url: str, *args: str) -> tuple[str, dict[str, Any] | None, float]:
    """Run `python cli.py ...` against the simulation's Redis: its output line, the JSON it
    wrote (when `--out` names a file), and how long it took."""
    env = clean_env(REDIS_URL=redis_url)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "cli.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(f"cli.py {args[0]} failed: {result.stderr.strip()}")
    out = Path(args[args.index("--out") + 1]) if "--out" in args else None
    if out is not None and out.suffix != ".json":
        out = out / "insights.json"
    document = orjson.loads(out.read_bytes()) if out is not None else None
    return result.stderr.strip(), document, seconds


async def wait_for(url: str, accept: Any, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() < deadline:
            if accept((await client.get(url)).text):
                return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url}: condition not met within {within} s")


def _model_version(text: str) -> float:
    for line in text.splitlines():
        if line.startswith("microbridge_model_version "):
            return float(line.split()[1])
    return 0.0


@dataclass
class SimResult:
    explore_visitors: int
    explore_conversions: int
    exploit_visitors: int
    train_seconds: float
    train_auc: float | None
    truth_auc: float
    train_summary: str
    insights_top3: list[str]
    planted_found: dict[str, bool]
    correct_share: float
    correct_by_segment: dict[str, float]
    visitors_by_segment: dict[str, int]
    model_chose_share: float
    expected_rate: float
    uniform_rate: float
    oracle_rate: float
    shown_by_segment: dict[str, dict[str, int]] = field(default_factory=dict)


def _top3(insights: dict[str, Any]) -> list[str]:
    return [orjson.dumps(c["condition"]).decode() for c in insights["candidates"][:3]]


def score_exploit(crowd: Sequence[Person], answers: Sequence[dict[str, Any]]) -> dict[str, Any]:
    by_segment: dict[str, list[bool]] = {}
    shown: dict[str, dict[str, int]] = {}
    expected = uniform = oracle = 0.0
    chose = 0
    for person, answer in zip(crowd, answers, strict=True):
        hero = answer["variant"] or "baseline"
        name = segment(person.cart, person.video)
        right = hero == best_hero(person.cart, person.video)
        by_segment.setdefault(name, []).append(right)
        counts = shown.setdefault(name, {})
        counts[hero] = counts.get(hero, 0) + 1
        chose += "model" in answer["reason"]
        expected += truth(hero, person.cart, person.video) if hero in HEROES else 0.0
        uniform += sum(truth(h, person.cart, person.video) for h in HEROES) / len(HEROES)
        oracle += truth(best_hero(person.cart, person.video), person.cart, person.video)
    n = len(crowd)
    every = [r for rights in by_segment.values() for r in rights]
    return {
        "correct_share": sum(every) / n,
        "correct_by_segment": {k: sum(v) / len(v) for k, v in sorted(by_segment.items())},
        "visitors_by_segment": {k: len(v) for k, v in sorted(by_segment.items())},
        "model_chose_share": chose / n,
        "expected_rate": expected / n,
        "uniform_rate": uniform / n,
        "oracle_rate": oracle / n,
        "shown_by_segment": shown,
    }


async def simulate(redis_url: str, base: str, work: Path, args: argparse.Namespace) -> SimResult:
    rng = random.Random(args.seed)
    await publish(redis_url, content(explore=True))
    await asyncio.sleep(1.0)  # the service recompiles on the announcement
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        traffic = Traffic(client)
        explorers = people(args.explore, rng, "explore")
        conversions = 0
        outcomes: list[tuple[float, bool]] = []
        for start in range(0, len(explorers), 500):
            crowd = explorers[start : start + 500]
            shown = await expose(traffic, redis_url, crowd)
            assert set(shown) <= set(HEROES), f"unexpected heroes while exploring: {set(shown)}"
            conversions += await convert(traffic, crowd, shown, rng, outcomes)
            print(f"  explored {start + len(crowd)} visitors", flush=True)
        await settled(redis_url)
        await asyncio.sleep(1.0)  # the decision log is written off the request path
        line, summary, seconds = cli(
            redis_url, "train", "--goal", GOAL, "--window", "1d", "--out", str(work / "t.json")
        )
        print(f"  {line}", flush=True)
        assert summary is not None
        insights_dir = work / "insights"
        _, insights, _ = cli(
            redis_url, "insights", "--goal", GOAL, "--window", "1d", "--out", str(insights_dir)
        )
        assert insights is not None
        top3 = _top3(insights)
        planted = {
            "signals.cartAbandoned": any("signals.cartAbandoned" in c for c in top3),
            "signals.engagement.video": any("signals.engagement.video" in c for c in top3),
        }
        await publish(redis_url, content(explore=False))
        await wait_for(f"{base}/metrics", lambda t: _model_version(t) >= 1)
        await asyncio.sleep(1.0)
        exploiters = people(args.exploit, rng, "exploit")
        answers: list[dict[str, Any]] = []
        for start in range(0, len(exploiters), 500):
            crowd = exploiters[start : start + 500]
            now = time.time()
            await traffic.batch([e for p in crowd for e in history(p, now)])
            await settled(redis_url)
            answers += await asyncio.gather(*(traffic.hero(p) for p in crowd))
    scored = score_exploit(exploiters, answers)
    return SimResult(
        explore_visitors=len(explorers),
        explore_conversions=conversions,
        exploit_visitors=len(exploiters),
        train_seconds=round(seconds, 2),
        train_auc=summary["slots"].get("home.hero", {}).get("auc"),
        truth_auc=float(roc_auc_score([c for _, c in outcomes], [p for p, _ in outcomes])),
        train_summary=line,
        insights_top3=top3,
        planted_found=planted,
        **scored,
    )


def _auc(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "n/a"


def report(result: SimResult) -> str:
    segments = ", ".join(
        f"{k} {v:.0%} (n={result.visitors_by_segment[k]})"
        for k, v in result.correct_by_segment.items()
    )
    found = ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in result.planted_found.items())
    return (
        f"\nexplore: {result.explore_visitors} visitors, {result.explore_conversions} orders\n"
        f"train: home.hero held-out AUC {_auc(result.train_auc)} (the planted chances themselves"
        f" score {result.truth_auc:.3f}), cli.py train {result.train_seconds} s\n"
        f"insights top 3: {'; '.join(result.insights_top3)}\n"
        f"  planted triggers in the top 3: {found}\n"
        f"exploit: {result.exploit_visitors} fresh visitors, the model chose for "
        f"{result.model_chose_share:.0%} of them\n"
        f"  shown their segment's best hero: {result.correct_share:.1%}  ({segments})\n"
        f"  expected conversion: {result.expected_rate:.4f} vs uniform {result.uniform_rate:.4f}"
        f" vs oracle {result.oracle_rate:.4f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.model_sim", description=__doc__)
    parser.add_argument("--explore", type=int, default=4000, help="exploring visitors (4000)")
    parser.add_argument("--exploit", type=int, default=1000, help="fresh visitors after (1000)")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="mb-model-sim-"))
    with redis_server() as server:
        port = free_port()
        env = clean_env(
            REDIS_URL=server.url,
            SEGMENT_WRITE_KEYS=WRITE_KEY,
            BRIDGE_LOG_LEVEL="warning",
            DECISIONS_MODEL_POLL_SECONDS="0.5",
            DECISIONS_SESSION_COHERENCE="false",
        )
        command = [sys.executable, "cli.py", "serve", "--host", HOST, "--port", str(port)]
        log = work / "service.log"
        with spawned(command, env, log):
            base = f"http://{HOST}:{port}"
            wait_ready(f"{base}/readyz", log)
            result = asyncio.run(simulate(server.url, base, work, args))
    print(report(result))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    document = {
        "timestamp": stamp,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "result": asdict(result),
    }
    path = save_result("model-sim", stamp, document)
    print(f"\nresults: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
