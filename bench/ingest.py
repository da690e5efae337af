"""Benchmark of the event pipeline: ingest rate, and event accepted → visible to /v1/assemble.

`uv run python -m bench.ingest` (options: `--duration`, `--connections`, `--batch`, `--rate`,
`--workers`, `--skip-ingest`, `--skip-latency`).

Ingest (wrk)
    A private `redis-server` on a free 127.0.0.1 port; the service (`python cli.py serve`: one
    uvicorn process, uvloop, httptools) with `SEGMENT_CONSUMER_ENABLED=false`, so the figure is the
    tracking API alone: read, authenticate, check and normalize every message, one pipelined XADD
    round trip per batch, answer. `wrk` POSTs `/v1/batch` bodies of `--batch` Segment messages
    (the size the real client sends) with a Lua `request()` that gives every message a fresh
    `messageId`; a second run sends the same batch gzipped. After each run the stream length is
    checked against the messages wrk reports as answered 200 (every accepted message is there).

Latency (Python load generator)
    The service with its in-process consumer (plus `--workers` `cli.py worker` processes). A
    paced load of `--rate` events/s in batches of `--batch` (spread over 10,000 visitors) runs
    while probes, every 20 ms, send one "Product Viewed" of `sku-1001` for 40 s to a fresh
    visitor and poll `POST /v1/assemble` every 2 ms until `home.recommendation` turns into
    `reco-accessories`. Reported: p50 / p99 / max of (first answer showing it - the probe's 200),
    the load actually delivered, and the backlog left when the load stops.

Results are printed and written to `bench/results/ingest-<UTC timestamp>.json`. Timings are
reported, never asserted; this module is not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import os
import statistics
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
from redis.asyncio import Redis

from bench.assemble import (
    HOST,
    ROOT,
    WrkResult,
    clean_env,
    git_revision,
    parse_wrk,
    redis_server,
    spawned,
    wait_ready,
    wrk,
)
from bench.assemble import (
    Options as WrkOptions,
)
from bench.report import save_result
from core.redis import Keys
from tests.support.redis_server import free_port

WRITE_KEY = "bench-write-key"
KEYS = Keys("mb")
WARMUP_SECONDS = 2
GOAL_EVENTS_PER_SECOND = 20_000
GOAL_P99_MS = 200.0


@dataclass(frozen=True, slots=True)
class Options:
    duration: int
    connections: int
    batch: int
    rate: int
    workers: int
    service_consumer: bool
    skip_ingest: bool
    skip_latency: bool


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__)
    parser.add_argument("--duration", type=int, default=10, help="seconds per run (10)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (16)")
    parser.add_argument("--batch", type=int, default=100, help="messages per batch (100)")
    parser.add_argument("--rate", type=int, default=GOAL_EVENTS_PER_SECOND, help="events/s")
    parser.add_argument("--workers", type=int, default=0, help="extra cli.py worker processes")
    parser.add_argument(
        "--no-service-consumer",
        action="store_true",
        help="SEGMENT_CONSUMER_ENABLED=false in the service (only the workers apply events)",
    )
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args(argv)
    return Options(
        args.duration,
        args.connections,
        args.batch,
        args.rate,
        args.workers,
        not args.no_service_consumer,
        args.skip_ingest,
        args.skip_latency,
    )


# ---------------------------------------------------------------- the messages


def message(i: int, tag: str) -> dict[str, Any]:
    """What segment-analytics-python sends for a product view (its exact field set)."""
    return {
        "integrations": {},
        "anonymousId": f"{tag}-visitor-{i % 10_000}",
        "properties": {"product_id": f"sku-{i % 500}", "category": "shoes", "duration": 3},
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "context": {"library": {"name": "analytics-python", "version": "2.3.4"}},
        "userId": None,
        "type": "track",
        "event": "Product Viewed",
        "messageId": f"{tag}-@N@-{i}",
    }


def batch_body(size: int, tag: str) -> bytes:
    sent_at = datetime.now(UTC).isoformat()
    body = {"batch": [message(i, tag) for i in range(size)], "sentAt": sent_at}
    return orjson.dumps(body | {"writeKey": WRITE_KEY})


def lua_dynamic(body: bytes, directory: Path) -> Path:
    """A wrk script whose every request carries fresh messageIds (`@N@` → a counter)."""
    path = directory / "batch.lua"
    path.write_text(
        "local template = [==[" + body.decode() + "]==]\n"
        "local counter = 0\n"
        'local headers = {["Content-Type"] = "application/json"}\n'
        "request = function()\n"
        "  counter = counter + 1\n"
        "  local id = tostring(counter) .. '-' .. tostring(math.random(1e9))\n"
        '  local body = template:gsub("@N@", id)\n'
        '  return wrk.format("POST", "/v1/batch", headers, body)\n'
        "end\n"
    )
    return path


def lua_gzip(body: bytes, directory: Path) -> Path:
    """A wrk script POSTing one gzipped batch (Lua long strings cannot hold binary: a file)."""
    blob = directory / "batch.json.gz"
    blob.write_bytes(gzip.compress(body))
    path = directory / "batch_gzip.lua"
    path.write_text(
        f'local f = io.open("{blob}", "rb")\n'
        "wrk.body = f:read('*all')\n"
        "f:close()\n"
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        'wrk.headers["Content-Encoding"] = "gzip"\n'
    )
    return path


# ---------------------------------------------------------------- ingest


@dataclass(slots=True)
class IngestResult:
    name: str
    batch: int
    wrk: WrkResult
    events_per_second: float
    stream_entries: int
    accepted_events: int

    @property
    def valid(self) -> bool:
        return self.wrk.requests > 0 and not self.wrk.errors


def service_env(redis_url: str, **extra: str) -> dict[str, str]:
    return clean_env(
        REDIS_URL=redis_url,
        SEGMENT_WRITE_KEYS=WRITE_KEY,
        BRIDGE_LOG_LEVEL="warning",
        **extra,
    )


@contextlib.contextmanager
def service(redis_url: str, work: Path, **extra: str) -> Iterator[str]:
    port = free_port()
    log = work / f"service-{port}.log"
    command = [sys.executable, "cli.py", "serve", "--host", HOST, "--port", str(port)]
    with spawned(command, service_env(redis_url, **extra), log):
        wait_ready(f"http://{HOST}:{port}/readyz", log)
        yield f"http://{HOST}:{port}"


async def _stream_length(redis_url: str) -> int:
    redis = Redis.from_url(redis_url)
    try:
        length: int = await redis.xlen(KEYS.events_stream)
        await redis.delete(KEYS.events_stream)
        return length
    finally:
        await redis.aclose()


def run_wrk(
    name: str, base: str, script: Path, options: Options, batch: int, redis_url: str
) -> IngestResult:
    url = f"{base}/v1/batch"
    print(f"  {name}: warm-up {WARMUP_SECONDS} s, then {options.duration} s ...", flush=True)
    wrk_options = WrkOptions(options.duration, options.connections, 1, False, pin=False)
    wrk(url, script, WARMUP_SECONDS, wrk_options)
    asyncio.run(_stream_length(redis_url))  # empty the stream after the warm-up
    result = parse_wrk(name, url, wrk(url, script, options.duration, wrk_options))
    entries = asyncio.run(_stream_length(redis_url))
    accepted = (result.requests - result.non_2xx) * batch
    result.check = "ok" if entries >= accepted else f"stream has {entries} < {accepted} accepted"
    return IngestResult(name, batch, result, result.requests_per_second * batch, entries, accepted)


def bench_ingest(redis_url: str, work: Path, options: Options) -> list[IngestResult]:
    body = batch_body(options.batch, "ingest")
    with service(redis_url, work, SEGMENT_CONSUMER_ENABLED="false") as base:
        check = httpx.post(f"{base}/v1/batch", content=body.replace(b"@N@", b"check"))
        if check.status_code != 200 or check.json() != {"success": True}:
            raise RuntimeError(f"the service refused the batch: {check.status_code} {check.text}")
        return [
            run_wrk("ingest", base, lua_dynamic(body, work), options, options.batch, redis_url),
            run_wrk("ingest-gzip", base, lua_gzip(body, work), options, options.batch, redis_url),
        ]


# ---------------------------------------------------------------- latency


@dataclass(slots=True)
class LatencyResult:
    rate_target: int
    rate_delivered: float
    probes: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    lost_probes: int
    backlog_after: int
    load_errors: int
    samples_ms: list[float] = field(default_factory=list)


class Http:
    """A minimal HTTP/1.1 keep-alive client: the load must cost the benchmark little CPU (httpx
    spends about a millisecond per request, which this 2-core machine does not have to spare)."""

    def __init__(self, base: str, connections: int) -> None:
        host, _, port = base.removeprefix("http://").partition(":")
        self._host, self._port = host, int(port)
        self._size = connections
        self._idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self._open = 0

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self._idle.empty() and self._open < self._size:
            self._open += 1
            await self._idle.put(await asyncio.open_connection(self._host, self._port))
        reader, writer = await self._idle.get()
        try:
            head = (
                f"POST {path} HTTP/1.1\r\nHost: {self._host}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            writer.write(head.encode() + body)
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            return status, await reader.readexactly(length)
        finally:
            self._idle.put_nowait((reader, writer))

    async def close(self) -> None:
        while not self._idle.empty():
            _, writer = self._idle.get_nowait()
            writer.close()


class Load:
    """Batches of `batch` events at `rate` events/s, each on its own schedule slot."""

    def __init__(self, http: Http, rate: int, batch: int) -> None:
        self._http = http
        self._interval = batch / rate
        self._template = batch_body(batch, "load")
        self._batch = batch
        self.sent = 0
        self.errors: list[int] = []

    async def run(self, stop: asyncio.Event) -> None:
        started = time.perf_counter()
        tasks: set[asyncio.Task[None]] = set()
        n = 0
        while not stop.is_set():
            delay = started + n * self._interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            body = self._template.replace(b"@N@", str(n).encode())
            task = asyncio.create_task(self._post(body))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        await asyncio.gather(*tasks)

    async def _post(self, body: bytes) -> None:
        status, _ = await self._http.post("/v1/batch", body)
        if status == 200:
            self.sent += self._batch
        else:
            self.errors.append(status)


async def probe(http: Http, n: int, give_up: float = 15.0) -> float | None:
    """One event for a fresh visitor; ms from its 200 to the first assemble that shows it."""
    visitor = f"probe-{n}-{os.getpid()}"
    event: dict[str, Any] = {"type": "track", "event": "Product Viewed", "anonymousId": visitor}
    event["properties"] = {"product_id": "sku-1001", "duration": 40}
    status, _ = await http.post(
        "/v1/batch", orjson.dumps({"writeKey": WRITE_KEY, "batch": [event]})
    )
    accepted = time.perf_counter()
    if status != 200:
        return None
    ask = orjson.dumps({"slots": ["home.recommendation"], "user": {"anonymousId": visitor}})
    while time.perf_counter() - accepted < give_up:
        _, answer = await http.post("/v1/assemble", ask)
        if orjson.loads(answer)["slots"][0]["variant"] == "reco-accessories":
            return (time.perf_counter() - accepted) * 1000
        await asyncio.sleep(0.005)
    return None


async def _latency(base: str, redis_url: str, options: Options) -> LatencyResult:
    load_http, probe_http = Http(base, 16), Http(base, 16)
    for n in range(5):  # warm-up
        await probe(probe_http, -1 - n)
    load = Load(load_http, options.rate, options.batch)
    stop = asyncio.Event()
    started = time.perf_counter()
    running = asyncio.create_task(load.run(stop))
    probes: list[asyncio.Task[float | None]] = []
    while time.perf_counter() - started < options.duration:  # a probe every 50 ms
        probes.append(asyncio.create_task(probe(probe_http, len(probes))))
        await asyncio.sleep(0.05)
    stop.set()
    await running
    elapsed = time.perf_counter() - started
    found = await asyncio.gather(*probes)
    await load_http.close()
    await probe_http.close()
    samples = [f for f in found if f is not None]
    backlog = await _backlog(redis_url)
    ordered = sorted(samples) or [0.0]
    return LatencyResult(
        rate_target=options.rate,
        rate_delivered=load.sent / elapsed,
        probes=len(samples),
        p50_ms=statistics.median(ordered),
        p99_ms=ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        max_ms=ordered[-1],
        lost_probes=len(found) - len(samples),
        backlog_after=backlog,
        load_errors=len(load.errors),
        samples_ms=[round(s, 2) for s in samples],
    )


async def _backlog(redis_url: str) -> int:
    redis = Redis.from_url(redis_url)
    try:
        groups = await redis.xinfo_groups(KEYS.events_stream)
        lag = groups[0].get("lag") or 0 if groups else 0
        return int(lag) + int(groups[0]["pending"] if groups else 0)
    finally:
        await redis.aclose()


@contextlib.contextmanager
def workers(redis_url: str, work: Path, count: int) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for index in range(count):
            command = [sys.executable, "cli.py", "worker"]
            log = work / f"worker-{index}.log"
            stack.enter_context(spawned(command, service_env(redis_url), log))
        yield


def bench_latency(redis_url: str, work: Path, options: Options) -> LatencyResult:
    enabled = "true" if options.service_consumer else "false"
    with (
        service(redis_url, work, SEGMENT_CONSUMER_ENABLED=enabled) as base,
        workers(redis_url, work, options.workers),
    ):
        print(
            f"  latency: {options.rate} events/s for {options.duration} s, "
            f"consumer in the service: {options.service_consumer}, "
            f"{options.workers} worker process(es) ...",
            flush=True,
        )
        return asyncio.run(_latency(base, redis_url, options))


# ---------------------------------------------------------------- report


def report(ingest: list[IngestResult], latency: LatencyResult | None, options: Options) -> None:
    if ingest:
        print(f"\nIngest: wrk 1 thread, {options.connections} connections, {options.duration} s")
        print(
            f"{'run':<12} {'req/s':>9} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"
        )
        for r in ingest:
            print(
                f"{r.name:<12} {r.wrk.requests_per_second:>9.1f} {r.events_per_second:>10.0f} "
                f"{r.wrk.p50_ms:>8.2f} {r.wrk.p99_ms:>8.2f} {r.wrk.errors:>7}  check: {r.wrk.check}"
            )
        best = max(r.events_per_second for r in ingest)
        verdict = "met" if best >= GOAL_EVENTS_PER_SECOND else "NOT met"
        print(f"goal >= {GOAL_EVENTS_PER_SECOND} events/s per process: {verdict}")
    if latency:
        print(
            f"\nAccepted -> visible to /v1/assemble, under {latency.rate_delivered:.0f} events/s "
            f"(target {latency.rate_target}): {latency.probes} probes, "
            f"p50 {latency.p50_ms:.1f} ms, p99 {latency.p99_ms:.1f} ms, "
            f"max {latency.max_ms:.1f} ms; lost {latency.lost_probes}, "
            f"load errors {latency.load_errors}, backlog after {latency.backlog_after}"
        )
        verdict = "met" if latency.p99_ms <= GOAL_P99_MS and not latency.lost_probes else "NOT met"
        print(f"goal p99 <= {GOAL_P99_MS:.0f} ms: {verdict}")


def write_results(
    options: Options, ingest: list[IngestResult], latency: LatencyResult | None
) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    document = {
        "timestamp": stamp,
        "revision": git_revision(),
        "machine": {"cpus": os.cpu_count()},
        "options": asdict(options),
        "ingest": [
            {**asdict(r), "wrk": {**asdict(r.wrk), "raw": None}, "valid": r.valid} for r in ingest
        ],
        "latency": asdict(latency) if latency else None,
    }
    path = save_result("ingest", stamp, document)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    ingest: list[IngestResult] = []
    latency = None
    with tempfile.TemporaryDirectory(prefix="mb-ingest-") as tmp:
        work = Path(tmp)
        if not options.skip_ingest:
            with redis_server() as server:
                ingest = bench_ingest(server.url, work, options)
        if not options.skip_latency:
            with redis_server() as server:
                latency = bench_latency(server.url, work, options)
    report(ingest, latency, options)
    print(f"\nresults: {write_results(options, ingest, latency).relative_to(ROOT)}")
    return 0 if all(r.valid for r in ingest) else 1


if __name__ == "__main__":
    sys.exit(main())
