"""Benchmark: the scale table of issue 14, at 1k and 10k entities (50k and 100k with --large).

`uv run python -m bench.scale [--sizes 1000,10000] [--large] [--root DIR] [--seconds 10]`

The space is generated (bench/scale_space.py: templates of 20 slots; a baseline and 3 variants
per slot, each variant linking its own two-locale entry with an image asset and 2 audiences) and
served by the loopback fake CDA of tests/fakes (pages of 100 items). For each size, against a
private `redis-server` and one service process (`python cli.py serve` from `--root`, so an older
checkout made with `git worktree add` can be measured the same way):

- raw SDK sync: the `contentful` SDK (our `ContentfulSource`) fetching every page, nothing else,
  in a process of its own;
- initial sync to ready: from the service's first sync request to its first `/readyz` 200;
- webhook → visible: a signed publish of a baseline entry, then `POST /v1/assemble` back to back
  until the new headline shows (20 rounds after 3 not counted);
- 10 publishes at once: 10 such webhooks sent together, until all 10 show (3 rounds);
- assemble req/s and p99 (wrk, 16 connections) with no webhooks, then with 1 webhook/s;
- RSS after the first sync, and after a restart on the same store;
- in a separate process (tracemalloc): the space's JSON as the sync delivered it, the decoded
  entities, the compiled library, and its renders of every slot answer, per entity.

Results are printed and written to `bench/results/scale-<UTC timestamp>.json`. Timings are
reported, never asserted; this module is not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.assemble import clean_env, git_revision, lua_script, parse_wrk, redis_server, stop
from bench.report import save_result
from bench.scale_space import (
    SECRET,
    SPACE,
    TOKEN,
    WEBHOOK_PATH,
    ScaleFake,
    baseline_id,
    publish_webhook,
    space,
    templates_for,
)
from bench.webhook_latency import percentile
from core.logging import configure_logging
from integration.client import ContentfulSource
from integration.config import ContentfulSettings
from tests.support.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
PAGE_SIZE = 100
PROBE = ROOT / "bench" / "scale_probe.py"


@dataclass(frozen=True)
class Options:
    sizes: tuple[int, ...] = (1_000, 10_000)
    root: Path = ROOT
    seconds: int = 10
    rounds: int = 20


@dataclass
class Row:
    entities: int
    templates: int
    raw_sync_s: float = 0.0
    sync_to_ready_s: float = 0.0
    visible_ms: dict[str, float] = field(default_factory=dict)
    burst_s: list[float] = field(default_factory=list)
    idle: dict[str, float] = field(default_factory=dict)
    webhooks: dict[str, float] = field(default_factory=dict)
    rss_first_mb: float = 0.0
    rss_restart_mb: float = 0.0
    memory: dict[str, float] = field(default_factory=dict)


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="entity counts, comma-separated")
    parser.add_argument("--large", action="store_true", help="add 50k and 100k")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to serve from")
    parser.add_argument("--seconds", type=int, default=Options.seconds, help="per wrk run")
    parser.add_argument("--rounds", type=int, default=Options.rounds, help="webhook rounds")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.large:
        sizes += [50_000, 100_000]
    return Options(tuple(sizes), args.root.resolve(), args.seconds, args.rounds)


# ---------------------------------------------------------------- the service process


def service_env(redis_url: str, cda_url: str, work: Path) -> dict[str, str]:
    return clean_env(
        BRIDGE_SNAPSHOT_PATH=str(work / "last-good-library.json"),
        REDIS_URL=redis_url,
        REDIS_KEY_PREFIX="mbscale",
        CONTENTFUL_SPACE_ID=SPACE,
        CONTENTFUL_ACCESS_TOKEN=TOKEN,
        CONTENTFUL_CDA_URL=cda_url,
        CONTENTFUL_SYNC_INTERVAL_SECONDS="3600",
        CONTENTFUL_WEBHOOK_SECRETS=SECRET,
        BRIDGE_LOG_LEVEL="warning",
    )


@contextlib.contextmanager
def serving(root: Path, env: dict[str, str], port: int, log: Path) -> Iterator[int]:
    """One service process from `root`; yields its pid, always stopped after."""
    command = [sys.executable, "cli.py", "serve", "--port", str(port)]
    with log.open("ab") as sink:
        process = subprocess.Popen(command, cwd=root, env=env, stdout=sink, stderr=sink)
        try:
            yield process.pid
        finally:
            stop(process)


def ready_at(url: str, log: Path, timeout: float = 900.0) -> float:
    """The wall-clock time of the first `/readyz` 200 (polled every 10 ms)."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=5.0) as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{url}/readyz").status_code == 200:
                    return time.time()
            time.sleep(0.01)
    raise RuntimeError(f"{url} not ready; output:\n{log.read_text(errors='replace')[-2000:]}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


# ---------------------------------------------------------------- measurements


def raw_sdk_sync(cda_url: str) -> float:
    """Every page through the SDK, as the service fetches them; the fake's one-time preparation
    of the initial sync (see `ScaleFake`) is done first and not counted."""
    settings = ContentfulSettings(space_id=SPACE, access_token=TOKEN, cda_url=cda_url)
    source = ContentfulSource(settings)
    source.fetch_sync_page(None)
    started = time.perf_counter()
    page = source.fetch_sync_page(None)
    while page.next_page_token:
        page = source.fetch_sync_page(page.next_page_token)
    return time.perf_counter() - started


def raw_sync_elsewhere(cda_url: str) -> float:
    """`raw_sdk_sync` in a process of its own, as the service runs it: in this one it would share
    the interpreter lock with the fake CDA's server threads."""
    code = "import sys; from bench.scale import raw_sdk_sync; print(raw_sdk_sync(sys.argv[1]))"
    done = subprocess.run(
        [sys.executable, "-c", code, cda_url],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    return float(done.stdout.split()[-1])


class Publisher:
    """Publishes baseline entries with new headlines and waits until assemble shows them."""

    def __init__(self, client: httpx.AsyncClient, templates: int) -> None:
        self.client = client
        self.templates = templates
        self.revision = 1
        self.count = 0

    async def publish(self, template: int, slot: int) -> str:
        self.revision += 1
        self.count += 1
        headline = f"Headline {self.count} at {time.time_ns()}"
        body, headers = publish_webhook(baseline_id(template, slot), self.revision, headline)
        response = await self.client.post(WEBHOOK_PATH, content=body, headers=headers)
        if response.status_code != 200 or response.json().get("status") != "applied":
            raise RuntimeError(f"webhook not applied: {response.status_code} {response.text}")
        return headline

    async def visible(self, template: int, slots: dict[int, str]) -> None:
        request = orjson.dumps({"template": f"t{template}"})
        while True:
            answer = orjson.loads((await self.client.post("/v1/assemble", content=request)).content)
            shown = {a["slot"]: a["entry"]["fields"].get("headline") for a in answer["slots"]}
            if all(shown.get(f"t{template}-s{s}") == h for s, h in slots.items()):
                return

    async def round(self, template: int, slots: Sequence[int]) -> float:
        started = time.perf_counter()
        headlines = await asyncio.gather(*(self.publish(template, s) for s in slots))
        await asyncio.wait_for(self.visible(template, dict(zip(slots, headlines, strict=True))), 30)
        return time.perf_counter() - started


async def webhook_latencies(
    url: str, templates: int, rounds: int
) -> tuple[list[float], list[float]]:
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:
        publisher = Publisher(client, templates)
        single = []
        for index in range(rounds + 3):
            seconds = await publisher.round(index % templates, [index % 20])
            if index >= 3:
                single.append(seconds)
            await asyncio.sleep(0.05)
        bursts = [await publisher.round(b % templates, list(range(10))) for b in range(3)]
    return single, bursts


async def assemble_load(
    url: str, work: Path, seconds: int, templates: int, *, rate: float
) -> dict[str, float]:
    """wrk on `POST /v1/assemble` for `seconds`, with `rate` webhooks per second meanwhile."""
    script = lua_script("scale-assemble", orjson.dumps({"template": "t0"}), work)
    command = ["wrk", "--threads=2", "--connections=16", f"--duration={seconds}s", "--latency"]
    process = await asyncio.create_subprocess_exec(
        *command, f"--script={script}", f"{url}/v1/assemble", stdout=asyncio.subprocess.PIPE
    )
    sent = 0
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:
        publisher = Publisher(client, templates)
        publisher.revision = 10_000
        while rate > 0 and process.returncode is None:
            await publisher.publish(sent % templates, (sent // templates) % 20)
            sent += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 1 / rate)
    output, _ = await process.communicate()
    result = parse_wrk("assemble", url, output.decode())
    return {
        "rps": round(result.requests_per_second),
        "p99Ms": round(result.p99_ms, 1),
        "errors": result.errors,
        "webhooks": sent,
    }


def memory_probe(root: Path, items_file: Path) -> dict[str, float]:
    """tracemalloc sizes in a fresh process serving code from `root` (bench/scale_probe.py)."""
    done = subprocess.run(
        [sys.executable, str(PROBE), str(items_file)],
        cwd=root,
        env=clean_env(PYTHONPATH=str(root)),
        capture_output=True,
        check=True,
        timeout=1800,
    )
    result: dict[str, float] = orjson.loads(done.stdout.splitlines()[-1])
    return result


def measure(entities: int, options: Options, work: Path) -> Row:
    items = space(entities)
    row = Row(entities=len(items), templates=templates_for(entities))
    items_file = work / f"space-{entities}.json"
    items_file.write_bytes(orjson.dumps(items))
    with ScaleFake(items, PAGE_SIZE) as fake, redis_server() as redis:
        row.raw_sync_s = round(raw_sync_elsewhere(fake.url), 2)
        fake.first_sync_at = None  # from now on: the service's
        env, port = service_env(redis.url, fake.url, work), free_port()
        log = work / f"serve-{entities}.log"
        url = f"http://127.0.0.1:{port}"
        with serving(options.root, env, port, log) as pid:
            row.sync_to_ready_s = round(ready_at(url, log) - (fake.first_sync_at or 0.0), 2)
            row.rss_first_mb = rss_mb(pid)
            single, bursts = asyncio.run(webhook_latencies(url, row.templates, options.rounds))
            row.visible_ms = _summary_ms(single)
            row.burst_s = [round(b, 2) for b in bursts]
            row.idle = asyncio.run(assemble_load(url, work, options.seconds, row.templates, rate=0))
            row.webhooks = asyncio.run(
                assemble_load(url, work, options.seconds, row.templates, rate=1.0)
            )
        with serving(options.root, env, port, log) as pid:
            ready_at(url, log)
            row.rss_restart_mb = rss_mb(pid)
    row.memory = memory_probe(options.root, items_file)
    return row


def _summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "p50": round(statistics.median(ms), 1),
        "p99": round(percentile(ms, 0.99), 1),
        "max": round(max(ms), 1),
    }


# ---------------------------------------------------------------- reporting


def print_rows(rows: Sequence[Row], options: Options) -> None:
    print(f"\nserved from {options.root}")
    print(
        "| entities | initial sync to ready (raw SDK sync) | webhook → visible p50 / p99 "
        "| 10 publishes at once | assemble req/s, p99: idle → 1 webhook/s "
        "| RSS after first sync (after a restart) | library per entity (JSON per entity) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        per = r.memory
        print(
            f"| {r.entities:,} | {r.sync_to_ready_s} s ({r.raw_sync_s} s) "
            f"| {r.visible_ms['p50']} / {r.visible_ms['p99']} ms "
            f"| {min(r.burst_s)} to {max(r.burst_s)} s "
            f"| {r.idle['rps']:,.0f}, {r.idle['p99Ms']} ms → "
            f"{r.webhooks['rps']:,.0f}, {r.webhooks['p99Ms']} ms "
            f"| {r.rss_first_mb:.0f} MB ({r.rss_restart_mb:.0f}) "
            f"| {per.get('libraryPerEntity', 0):,.0f} B ({per.get('jsonPerEntity', 0):,.0f} B) |"
        )


def write_rows(rows: Sequence[Row], options: Options) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    document: dict[str, Any] = {
        "timestamp": stamp,
        "revision": git_revision(),
        "root": str(options.root),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "rows": [asdict(r) for r in rows],
    }
    path = save_result("scale", stamp, document)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    configure_logging("warning", json=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mb-scale-") as work:
        for entities in options.sizes:
            print(f"{entities:,} entities ...", flush=True)
            rows.append(measure(entities, options, Path(work)))
    print_rows(rows, options)
    print(f"\nresults: {write_rows(rows, options).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
