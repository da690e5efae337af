"""Benchmark: Contentful publish webhook → change visible in `POST /v1/assemble`.

`uv run python -m bench.webhook_latency [--webhooks 200] [--filler 0]`

Setup: a private `redis-server` on a free 127.0.0.1 port; two service processes
(`python cli.py serve`, demo space, `CONTENTFUL_WEBHOOK_SECRETS` set) sharing it. `--filler N`
first writes N extra entries (copies of a hero entry, two locales) into the store, so that both
replicas hold a large library, as a big space would.

After `--warmup` rounds that are not counted (first requests warm caches), each round sends
one signed `ContentManagement.Entry.publish` of the `hero-cart` entry (CMA
format, next revision, the headline alternating between two values) to one replica; receivers
alternate. From the moment the request is sent, one poller per replica calls `/v1/assemble`
back to back (one request in flight each) until the new headline shows. Reported per replica
(the one that received the webhook, and the other one): p50, p99 and max of the time from
sending the webhook to the first assemble answer that shows it, plus the webhook's own answer
time. The resolution is one assemble round trip (see `pollMs`).

Before the HTTP part, the in-process costs behind a snapshot refresh are timed on the same store:
a full `ContentStore.load()`, one `compile_library`, and the patch read (`HMGET` of one key).

Results are printed and written to `bench/results/webhook-latency-<UTC timestamp>.json`. The
goal (issue 4): p99 ≤ 50 ms on the receiving replica, ≤ 100 ms on the other. Timings are
reported, never asserted; this module is not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import math
import os
import platform
import statistics
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

from bench.assemble import clean_env, git_revision, redis_server, spawned, wait_ready
from bench.report import save_result
from core.logging import configure_logging
from core.redis import Keys
from integration.demo import DEMO_SPACE
from integration.library import compile_library
from integration.normalize import Changes, normalize_items
from integration.store import ContentStore, writes_of
from tests.support.redis_server import free_port
from webhooks.verification import sign_contentful

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PATH = "/webhooks/contentful"
SECRET = "bench-webhook-secret-0123456789abcdef0123456789abcdef0123456789abcd"
PREFIX = "mbbench"
ENTRY = "hero-cart"
HEADLINES = ("Alpha: your cart misses you", "Bravo: your cart misses you")
VISITOR = orjson.dumps({"template": "home", "context": {"audiences": ["cart_abandoners"]}})
GOALS_MS = {"same": 50.0, "other": 100.0}


@dataclass(frozen=True)
class Options:
    webhooks: int = 200
    warmup: int = 10
    filler: int = 0
    pause_ms: float = 20.0


@dataclass
class Round:
    receiver: int
    webhook_ms: float
    same_ms: float
    other_ms: float
    polls: int


@dataclass
class Summary:
    p50: float
    p99: float
    max: float


@dataclass
class Result:
    options: Options
    entities: int
    in_process_ms: dict[str, float]
    webhook: Summary
    same: Summary
    other: Summary
    poll_ms: float
    rounds: list[Round] = field(default_factory=list)


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--webhooks", type=int, default=Options.webhooks)
    parser.add_argument("--warmup", type=int, default=Options.warmup, help="rounds not counted")
    parser.add_argument("--filler", type=int, default=Options.filler, help="extra entries")
    parser.add_argument("--pause-ms", type=float, default=Options.pause_ms, help="between rounds")
    args = parser.parse_args(argv)
    return Options(
        webhooks=args.webhooks, warmup=args.warmup, filler=args.filler, pause_ms=args.pause_ms
    )


# ---------------------------------------------------------------- payloads


def demo_entry() -> dict[str, Any]:
    items: list[dict[str, Any]] = orjson.loads(DEMO_SPACE.read_bytes())["sync"]["items"]
    return next(i for i in items if i["sys"]["id"] == ENTRY)


def publish_body(revision: int, headline: str) -> bytes:
    item = copy.deepcopy(demo_entry())
    item["fields"]["headline"] = {"en-US": headline}
    sys_ = item["sys"]
    sys_.update(revision=revision, publishedVersion=3 * revision + 1)
    sys_["updatedAt"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return orjson.dumps({"metadata": {"tags": []}, "sys": sys_, "fields": item["fields"]})


def signed_headers(body: bytes) -> dict[str, str]:
    headers = {
        "content-type": "application/vnd.contentful.management.v1+json",
        "x-contentful-topic": "ContentManagement.Entry.publish",
    }
    stamp = time.time_ns() // 1_000_000
    signature = sign_contentful(
        secret=SECRET, method="POST", path=PATH, headers=headers, body=body, timestamp_ms=stamp
    )
    return headers | signature


def filler_items(count: int) -> list[dict[str, Any]]:
    base = demo_entry()
    items = []
    for index in range(count):
        item = copy.deepcopy(base)
        item["sys"]["id"] = f"filler-{index}"
        items.append(item)
    return items


# ---------------------------------------------------------------- store side


async def seed_and_time(redis_url: str, filler: int) -> tuple[int, dict[str, float]]:
    """Write the filler, then time a full load, a compile and a one-key patch read."""
    redis = Redis.from_url(redis_url)
    store = ContentStore(redis, Keys(PREFIX))
    try:
        items = filler_items(filler)
        for start in range(0, filler, 1000):
            page = items[start : start + 1000]
            await store.write(writes_of(Changes(upserts=normalize_items(page).upserts)))
        loads, compiles, reads = [], [], []
        for _ in range(5):
            started = time.perf_counter()
            content = await store.load()
            loads.append(time.perf_counter() - started)
            started = time.perf_counter()
            compile_library(content)
            compiles.append(time.perf_counter() - started)
            started = time.perf_counter()
            await store.read_entities((f"Entry:{ENTRY}",))
            reads.append(time.perf_counter() - started)
        timings = {
            "fullLoad": _ms(statistics.median(loads)),
            "compile": _ms(statistics.median(compiles)),
            "patchRead": _ms(statistics.median(reads)),
        }
        return len(content.entities), timings
    finally:
        await redis.aclose()


async def library_versions(clients: Sequence[httpx.AsyncClient]) -> list[int]:
    return [int((await c.get("/readyz")).json()["library"]["version"]) for c in clients]


async def wait_converged(clients: Sequence[httpx.AsyncClient], redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    try:
        version = await ContentStore(redis, Keys(PREFIX)).version()
    finally:
        await redis.aclose()
    deadline = time.monotonic() + 60
    while set(await library_versions(clients)) != {version}:
        if time.monotonic() > deadline:
            raise RuntimeError("replicas did not load the seeded library")
        await asyncio.sleep(0.1)


# ---------------------------------------------------------------- HTTP side


async def poll_until(client: httpx.AsyncClient, headline: str, started: float) -> tuple[float, int]:
    polls = 0
    while True:
        polls += 1
        answer = orjson.loads((await client.post("/v1/assemble", content=VISITOR)).content)
        if answer["slots"][0]["entry"]["fields"].get("headline") == headline:
            return _ms(time.perf_counter() - started), polls


async def one_round(
    index: int, revision: int, clients: Sequence[httpx.AsyncClient], webhook: httpx.AsyncClient
) -> Round:
    receiver = index % 2
    headline = HEADLINES[index % 2]
    body = publish_body(revision, headline)
    headers = signed_headers(body)
    started = time.perf_counter()
    pollers = [asyncio.create_task(poll_until(c, headline, started)) for c in clients]
    response = await webhook.post(
        f"{clients[receiver].base_url}{PATH}", content=body, headers=headers
    )
    webhook_ms = _ms(time.perf_counter() - started)
    if response.status_code != 200 or response.json().get("status") != "applied":
        for task in pollers:
            task.cancel()
        raise RuntimeError(f"webhook {index} not applied: {response.status_code} {response.text}")
    (first_ms, first_polls), (second_ms, second_polls) = await asyncio.wait_for(
        asyncio.gather(*pollers), 10
    )
    same, other = (first_ms, second_ms) if receiver == 0 else (second_ms, first_ms)
    return Round(receiver, webhook_ms, same, other, first_polls + second_polls)


async def run_rounds(urls: Sequence[str], redis_url: str, options: Options) -> Result:
    entities, timings = await seed_and_time(redis_url, options.filler)
    limits = httpx.Limits(max_connections=4)
    clients = [httpx.AsyncClient(base_url=u, timeout=5.0, limits=limits) for u in urls]
    webhook = httpx.AsyncClient(timeout=5.0)
    try:
        await wait_converged(clients, redis_url)
        poll_ms = await time_poll(clients[0])
        rounds = []
        revision = int(demo_entry()["sys"]["revision"])
        for index in range(options.warmup + options.webhooks):
            revision += 1
            measured = await one_round(index, revision, clients, webhook)
            if index >= options.warmup:
                rounds.append(measured)
            await asyncio.sleep(options.pause_ms / 1000)
    finally:
        for client in [*clients, webhook]:
            await client.aclose()
    return Result(
        options=options,
        entities=entities,
        in_process_ms=timings,
        webhook=summarize([r.webhook_ms for r in rounds]),
        same=summarize([r.same_ms for r in rounds]),
        other=summarize([r.other_ms for r in rounds]),
        poll_ms=poll_ms,
        rounds=rounds,
    )


async def time_poll(client: httpx.AsyncClient) -> float:
    samples = []
    for _ in range(50):
        started = time.perf_counter()
        await client.post("/v1/assemble", content=VISITOR)
        samples.append(time.perf_counter() - started)
    return _ms(statistics.median(samples))


# ---------------------------------------------------------------- reporting


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def summarize(values: Sequence[float]) -> Summary:
    return Summary(p50=percentile(values, 0.5), p99=percentile(values, 0.99), max=max(values))


def print_result(result: Result) -> None:
    print(f"\nlibrary: {result.entities} entities; {result.options.webhooks} publish webhooks")
    timings = ", ".join(f"{k} {v:.2f} ms" for k, v in result.in_process_ms.items())
    print(f"in process (median of 5): {timings}")
    print(f"one assemble round trip (poll resolution): {result.poll_ms:.2f} ms\n")
    print(f"{'':28} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'goal p99':>9}")
    rows = [
        ("webhook answered", result.webhook, None),
        ("visible, same replica", result.same, GOALS_MS["same"]),
        ("visible, other replica", result.other, GOALS_MS["other"]),
    ]
    for name, summary, goal in rows:
        goal_text = f"≤ {goal:.0f}" if goal else ""
        print(f"{name:28} {summary.p50:8.2f} {summary.p99:8.2f} {summary.max:8.2f} {goal_text:>9}")


def write_result(result: Result) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    document = {
        "timestamp": stamp,
        "revision": git_revision(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "goalsMs": GOALS_MS,
        "entities": result.entities,
        "options": asdict(result.options),
        "inProcessMs": result.in_process_ms,
        "pollMs": result.poll_ms,
        "webhookMs": asdict(result.webhook),
        "sameReplicaMs": asdict(result.same),
        "otherReplicaMs": asdict(result.other),
        "rounds": [asdict(r) for r in result.rounds],
    }
    path = save_result("webhook-latency", stamp, document)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    configure_logging("warning", json=True)
    with redis_server() as server, tempfile.TemporaryDirectory(prefix="mb-bench-") as work:
        env = clean_env(
            REDIS_URL=server.url,
            REDIS_KEY_PREFIX=PREFIX,
            CONTENTFUL_WEBHOOK_SECRETS=SECRET,
            BRIDGE_LOG_LEVEL="warning",
        )
        ports = [free_port(), free_port()]
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        with contextlib.ExitStack() as stack:
            for index, port in enumerate(ports):
                log = Path(work) / f"replica-{index}.log"
                command = [sys.executable, "cli.py", "serve", "--port", str(port)]
                stack.enter_context(spawned(command, env, log))
                wait_ready(f"{urls[index]}/readyz", log)
            print(f"two replicas on {', '.join(urls)}; redis on {server.url}", flush=True)
            result = asyncio.run(run_rounds(urls, server.url, options))
    print_result(result)
    print(f"\nresults: {write_result(result).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
