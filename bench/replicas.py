"""Benchmark: three replicas behind a round-robin balancer (issue 14, replicas).

`uv run python -m bench.replicas [--webhooks 100] [--flips 50] [--seconds 10] [--cluster]`

Setup: a private `redis-server` on a free 127.0.0.1 port (with `--cluster`, a Redis Cluster of
3 masters and 3 replicas on loopback ports, tests/support/redis_cluster.py); three service
processes (`python cli.py serve`, demo space) sharing it; the round-robin TCP proxy of
tests/support/proxy.py in a process of its own in front of them (it balances connections).

1. Webhook → visible on all: after `--warmup` uncounted rounds, each round sends one signed
   `Entry.publish` of `hero-cart` (next revision, alternating headline) through the proxy on a
   new connection, so receivers rotate. From the moment it is sent, one poller per replica calls
   that replica's `/v1/assemble` directly, back to back, until the new headline shows. Reported:
   the webhook's answer time, visible on each replica (every replica's time, pooled) and visible
   on all (the slowest of the three per round): p50, p99, max.
2. Kill switch → effective on all: `--flips` admin calls through the proxy, alternately setting
   and clearing the `home.hero` slot switch, polled the same way until every replica answers
   accordingly.
3. Throughput: wrk (2 threads, 16 connections) on `POST /v1/assemble` through the proxy, then
   on one replica directly, `--seconds` each after a warm-up, twice, interleaved; the best of
   each and their ratio. On a machine with fewer cores than replicas, the ratio says what the
   balancer costs rather than what replicas add.

Results are printed and written to `bench/results/replicas-<UTC timestamp>.json`. Goals: visible
on all p99 ≤ 100 ms, kill switch on all p99 ≤ 100 ms. Timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.assemble import git_revision, lua_script, parse_wrk, redis_server, stop
from bench.report import save_result
from bench.webhook_latency import (
    HEADLINES,
    PATH,
    SECRET,
    Summary,
    demo_entry,
    publish_body,
    signed_headers,
    summarize,
)
from tests.core.server_process import ServerProcess
from tests.support.redis_cluster import RedisCluster
from tests.support.redis_server import free_port
from tests.support.replicas import start_replica, wait_ready

ROOT = Path(__file__).resolve().parent.parent
REPLICAS = 3
TOKEN = "bench-replicas-admin-token-0123456789"
ADMIN = {"authorization": f"Bearer {TOKEN}", "x-admin-user": "bench"}
VISITOR = orjson.dumps({"template": "home", "context": {"audiences": ["cart_abandoners"]}})
SWITCH = "/admin/kill-switches/slot/home.hero"
SWITCHED = "kill switch: slot home.hero (admin)"
GOAL_MS = 100.0

Check = Callable[[dict[str, Any]], bool]


@dataclass(frozen=True)
class Options:
    webhooks: int = 100
    flips: int = 50
    warmup: int = 5
    seconds: int = 10
    cluster: bool = False


@dataclass
class Latencies:
    sent_ms: list[float]
    each_ms: list[float]
    all_ms: list[float]


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--webhooks", type=int, default=Options.webhooks)
    parser.add_argument("--flips", type=int, default=Options.flips, help="kill switch calls")
    parser.add_argument("--warmup", type=int, default=Options.warmup, help="rounds not counted")
    parser.add_argument("--seconds", type=int, default=Options.seconds, help="per wrk run")
    parser.add_argument("--cluster", action="store_true", help="over a 3+3 Redis Cluster")
    args = parser.parse_args(argv)
    return Options(args.webhooks, args.flips, args.warmup, args.seconds, args.cluster)


# ---------------------------------------------------------------- the fleet


@contextlib.contextmanager
def proxy_process(backends: Sequence[int], log: Path) -> Iterator[str]:
    """The round-robin proxy in a process of its own; yields its URL."""
    port = free_port()
    targets = [f"127.0.0.1:{b}" for b in backends]
    command = [sys.executable, "-m", "tests.support.proxy", "--port", str(port), *targets]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, cwd=ROOT, stdout=sink, stderr=sink)
        try:
            _wait_port(port)
            yield f"http://127.0.0.1:{port}"
        finally:
            stop(process)


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"the proxy did not listen on {port}")


@contextlib.contextmanager
def shared_store(cluster: bool) -> Iterator[str]:
    """A private redis-server, or a Redis Cluster of 3 masters and 3 replicas; yields its URL."""
    if not cluster:
        with redis_server() as server:
            yield server.url
        return
    nodes = RedisCluster()
    nodes.start()
    try:
        yield nodes.url
    finally:
        nodes.stop()


@contextlib.contextmanager
def replicas(redis_url: str, cluster: bool, work: Path) -> Iterator[list[ServerProcess]]:
    env = {
        "REDIS_URL": redis_url,
        "REDIS_CLUSTER": "true" if cluster else "false",
        "REDIS_KEY_PREFIX": "mbreplicas",
        "CONTENTFUL_WEBHOOK_SECRETS": SECRET,
        "BRIDGE_ADMIN_TOKEN": TOKEN,
        "BRIDGE_LOG_LEVEL": "warning",
    }
    servers = [start_replica(work / f"replica-{i}", env) for i in range(REPLICAS)]
    try:
        for server in servers:
            wait_ready(server)
        yield servers
    finally:
        for server in servers:
            server.stop()


# ---------------------------------------------------------------- change → visible on all


async def hero(client: httpx.AsyncClient) -> dict[str, Any]:
    slot: dict[str, Any] = orjson.loads(
        (await client.post("/v1/assemble", content=VISITOR)).content
    )["slots"][0]
    return slot


async def visible(client: httpx.AsyncClient, check: Check, started: float) -> float:
    while not check(await hero(client)):
        pass
    return _ms(time.perf_counter() - started)


async def timed_change(
    send: Callable[[], Awaitable[httpx.Response]],
    check: Check,
    direct: Sequence[httpx.AsyncClient],
) -> tuple[float, list[float]]:
    """Send a change and poll every replica until `check` holds there: (sent, per replica)."""
    started = time.perf_counter()
    pollers = [asyncio.create_task(visible(c, check, started)) for c in direct]
    response = await send()
    sent = _ms(time.perf_counter() - started)
    if response.status_code != 200:
        for task in pollers:
            task.cancel()
        raise RuntimeError(f"change refused: {response.status_code} {response.text}")
    return sent, list(await asyncio.wait_for(asyncio.gather(*pollers), 10))


async def webhook_rounds(
    balanced: httpx.AsyncClient, direct: Sequence[httpx.AsyncClient], options: Options
) -> Latencies:
    result = Latencies([], [], [])
    revision = int(demo_entry()["sys"]["revision"])
    for index in range(options.warmup + options.webhooks):
        revision += 1
        headline = HEADLINES[index % 2]
        body = publish_body(revision, headline)

        async def send(body: bytes = body) -> httpx.Response:
            return await balanced.post(PATH, content=body, headers=signed_headers(body))

        def shows(slot: dict[str, Any], headline: str = headline) -> bool:
            return bool(slot["entry"]["fields"].get("headline") == headline)

        sent, each = await timed_change(send, shows, direct)
        if index >= options.warmup:
            _record(result, sent, each)
        await asyncio.sleep(0.02)
    return result


async def kill_switch_rounds(
    balanced: httpx.AsyncClient, direct: Sequence[httpx.AsyncClient], options: Options
) -> Latencies:
    result = Latencies([], [], [])
    for index in range(options.warmup + options.flips):
        setting = index % 2 == 0
        method = "POST" if setting else "DELETE"

        async def send(method: str = method) -> httpx.Response:
            return await balanced.request(method, SWITCH, json={"reason": "bench"}, headers=ADMIN)

        def applied(slot: dict[str, Any], setting: bool = setting) -> bool:
            return (slot["reason"] == SWITCHED) is setting

        sent, each = await timed_change(send, applied, direct)
        if index >= options.warmup:
            _record(result, sent, each)
        await asyncio.sleep(0.02)
    return result


def _record(result: Latencies, sent: float, each: Sequence[float]) -> None:
    result.sent_ms.append(sent)
    result.each_ms.extend(each)
    result.all_ms.append(max(each))


async def changes(proxy: str, urls: Sequence[str], options: Options) -> dict[str, Latencies]:
    one_each = httpx.Limits(max_keepalive_connections=0)  # every change its own connection
    direct = [httpx.AsyncClient(base_url=u, timeout=5.0) for u in urls]
    balanced = httpx.AsyncClient(base_url=proxy, timeout=5.0, limits=one_each)
    try:
        print(f"  {options.webhooks} webhooks ...", flush=True)
        webhooks = await webhook_rounds(balanced, direct, options)
        print(f"  {options.flips} kill switch flips ...", flush=True)
        switches = await kill_switch_rounds(balanced, direct, options)
    finally:
        for client in [*direct, balanced]:
            await client.aclose()
    return {"webhook": webhooks, "killSwitch": switches}


# ---------------------------------------------------------------- throughput


def wrk_run(url: str, script: Path, seconds: int) -> dict[str, Any]:
    command = ["wrk", "--threads=2", "--connections=16", f"--duration={seconds}s", "--latency"]
    done = subprocess.run(
        [*command, f"--script={script}", f"{url}/v1/assemble"],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    parsed = parse_wrk("assemble", url, done.stdout)
    return {
        "rps": parsed.requests_per_second,
        "p50Ms": parsed.p50_ms,
        "p99Ms": parsed.p99_ms,
        "errors": parsed.errors,
    }


def throughput(proxy: str, direct: str, work: Path, seconds: int) -> dict[str, Any]:
    script = lua_script("replicas-assemble", VISITOR, work)
    runs: dict[str, list[dict[str, Any]]] = {"proxy": [], "direct": []}
    for _ in range(2):
        for name, url in (("proxy", proxy), ("direct", direct)):
            print(f"  wrk {name}: {seconds} s ...", flush=True)
            wrk_run(url, script, 2)
            runs[name].append(wrk_run(url, script, seconds))
    best = {name: max(found, key=lambda r: float(r["rps"])) for name, found in runs.items()}
    ratio = best["proxy"]["rps"] / best["direct"]["rps"] if best["direct"]["rps"] else 0.0
    return {"best": best, "runs": runs, "ratio": round(ratio, 2)}


# ---------------------------------------------------------------- reporting


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def summaries(found: Latencies) -> dict[str, Summary]:
    return {
        "sent": summarize(found.sent_ms),
        "each": summarize(found.each_ms),
        "all": summarize(found.all_ms),
    }


def print_result(latencies: dict[str, Latencies], rate: dict[str, Any]) -> None:
    print(f"\n{'':34} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'goal p99':>9}")
    labels = {"sent": "answered", "each": "visible, each replica", "all": "visible on all three"}
    for kind, found in latencies.items():
        for key, summary in summaries(found).items():
            goal = f"≤ {GOAL_MS:.0f}" if key == "all" else ""
            name = f"{kind}: {labels[key]}"
            print(f"{name:34} {summary.p50:8.2f} {summary.p99:8.2f} {summary.max:8.2f} {goal:>9}")
    best = rate["best"]
    print(
        f"\nassemble req/s: through the proxy {best['proxy']['rps']:.0f} "
        f"(p99 {best['proxy']['p99Ms']:.1f} ms), one replica directly {best['direct']['rps']:.0f} "
        f"(p99 {best['direct']['p99Ms']:.1f} ms); ratio {rate['ratio']:.2f}"
    )


def write_result(options: Options, latencies: dict[str, Latencies], rate: dict[str, Any]) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    document = {
        "timestamp": stamp,
        "revision": git_revision(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "replicas": REPLICAS,
        "store": "cluster (3 masters, 3 replicas)" if options.cluster else "single node",
        "goalP99Ms": GOAL_MS,
        "options": asdict(options),
        "latencyMs": {
            kind: {key: asdict(s) for key, s in summaries(found).items()}
            for kind, found in latencies.items()
        },
        "throughput": rate,
        "samplesMs": {kind: asdict(found) for kind, found in latencies.items()},
    }
    path = save_result("replicas", stamp, document)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    with (
        shared_store(options.cluster) as redis_url,
        tempfile.TemporaryDirectory(prefix="mb-replicas-") as folder,
    ):
        work = Path(folder)
        with replicas(redis_url, options.cluster, work) as servers:
            urls = [server.url for server in servers]
            with proxy_process([s.port for s in servers], work / "proxy.log") as proxy:
                store = "a Redis Cluster" if options.cluster else "one Redis"
                print(
                    f"{REPLICAS} replicas on {store}: {', '.join(urls)} behind {proxy}", flush=True
                )
                latencies = asyncio.run(changes(proxy, urls, options))
                rate = throughput(proxy, urls[0], work, options.seconds)
    print_result(latencies, rate)
    print(f"\nresults: {write_result(options, latencies, rate).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
