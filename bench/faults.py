"""Fault benchmark of `POST /v1/assemble`: a steady load while Redis hangs, dies and restarts.

Issue 10, item 1 (`make bench-faults`, or `uv run python -m bench.faults`).

Setup: a private `redis-server` on a free 127.0.0.1 port (never 6379) holds the profile of the
benchmark visitor (`bench-user`, as in `bench/assemble.py`). The service runs the way operators run
it, `python cli.py serve` (one uvicorn worker, uvloop, httptools, no access log) on the demo space,
pointed at that Redis, with `DECISIONS_READ_BUDGET_SECONDS` set to `--budget` (0.04, the default).
After `/readyz` answers 200 and one assemble is checked (200, not degraded, profile applied), an
asyncio client on loopback sends assembles at a fixed rate, `--rate` (100/s) (open loop: a request
is sent on schedule whether or not the earlier ones have been answered, so a stall shows as latency
and is never hidden by a client that waits). The client is a minimal keep-alive HTTP/1.1 one
(`RawClient`; `--client httpx` for comparison: httpx costs this machine more CPU than the service
does). The phases:

    warm-up    2 s   not reported
    baseline   5 s   Redis healthy
    hang       5 s   SIGSTOP to redis-server at the start, SIGCONT at the end
    recovery   5 s   Redis healthy again
    killed     3 s   SIGKILL at the start; at the end redis-server starts again, EMPTY, same port
    restarted  5 s   Redis healthy but empty (the visitor's profile is gone)

Each request is labelled with the phase it was SENT in and records its latency (from the send to
the full answer, measured by the client), its status, and from the answer's body whether it was
`degraded: true` and whether the stored profile was applied (`home.hero` -> `hero-cart`). Per
phase: count, p50, p99, max latency, non-2xx (a transport error counts as one), degraded answers,
answers with the profile applied, and the client's worst lag behind its schedule (a lag means the
client itself, not the service, was short of CPU). Goal: p99 during the hang <= 2x the budget, and
zero non-2xx. The table is printed and written, with a 250 ms timeline, to
`bench/results/faults-<UTC timestamp>.json`. Bounded: about 25 s of load plus start-up; every
process it started is stopped at the end, whatever happens. Exit status 1 when any answer was
non-2xx or the pre-load check failed; the latency goal is reported, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.assemble import (
    ASSEMBLE_BODY,
    EXPECTED_HERO,
    HOST,
    ROOT,
    check_assemble,
    clean_env,
    git_revision,
    spawned,
    stop_redis,
    wait_ready,
    write_profile,
)
from bench.report import RESULTS, save_result
from tests.support.redis_server import RedisServer, free_port

WARMUP = "warm-up"
PATH = "/v1/assemble"
REQUEST_TIMEOUT = 10.0  # seconds; a request still unanswered then counts as a transport error
HEADERS = {"content-type": "application/json"}
TIMELINE_STEP = 0.25  # seconds per timeline bucket in the JSON


# ---------------------------------------------------------------- options


@dataclass(frozen=True, slots=True)
class Options:
    rate: float
    budget: float
    phase_seconds: float
    down_seconds: float
    client: str


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.faults",
        description="POST /v1/assemble under a steady load while Redis hangs, dies and restarts.",
    )
    parser.add_argument("--rate", type=float, default=100, help="requests per second (100)")
    parser.add_argument(
        "--budget",
        type=float,
        default=float(os.environ.get("DECISIONS_READ_BUDGET_SECONDS", "0.04")),
        help="DECISIONS_READ_BUDGET_SECONDS for the service (0.04, or the environment's)",
    )
    parser.add_argument(
        "--phase-seconds", type=float, default=5, help="baseline, hang and recoveries (5)"
    )
    parser.add_argument(
        "--down-seconds", type=float, default=3, help="Redis killed before restart (3)"
    )
    parser.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="raw: a minimal keep-alive HTTP/1.1 client (default); httpx: for comparison",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.rate <= 2000 or not 0 < args.budget <= 1:
        parser.error("need 1 <= --rate <= 2000 and 0 < --budget <= 1")
    if not 1 <= args.phase_seconds <= 30 or not 0.5 <= args.down_seconds <= 30:
        parser.error("need 1 <= --phase-seconds <= 30 and 0.5 <= --down-seconds <= 30")
    return Options(args.rate, args.budget, args.phase_seconds, args.down_seconds, args.client)


# ---------------------------------------------------------------- Redis, with faults


class FaultyRedis:
    """The private redis-server, with the faults this benchmark injects."""

    def __init__(self) -> None:
        self.server = RedisServer()
        self.stopped = False

    @property
    def process(self) -> subprocess.Popen[bytes]:
        if self.server.process is None:
            raise RuntimeError("redis-server is not running")
        return self.server.process

    def hang(self) -> None:
        self.process.send_signal(signal.SIGSTOP)
        self.stopped = True

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)
        self.stopped = False

    def kill(self) -> None:
        process = self.process
        process.kill()
        process.wait(timeout=5)
        self.server.process = None

    def restart_empty(self) -> None:
        """Start again on the same port; nothing was persisted (`--save ""`), so it is empty."""
        self.server.start()

    def close(self) -> None:
        process = self.server.process
        if process is not None and self.stopped and process.poll() is None:
            process.send_signal(signal.SIGCONT)  # a stopped process would not act on SIGTERM
        stop_redis(self.server)  # also removes its directory


@contextlib.contextmanager
def faulty_redis() -> Iterator[FaultyRedis]:
    redis = FaultyRedis()
    try:
        redis.server.start()
        yield redis
    finally:
        redis.close()


# ---------------------------------------------------------------- phases and load


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    seconds: float
    what: str
    at_start: Callable[[], Awaitable[None]] | None = None
    at_end: Callable[[], Awaitable[None]] | None = None


def plan(redis: FaultyRedis, options: Options) -> list[Phase]:
    async def hang() -> None:
        redis.hang()

    async def resume() -> None:
        redis.resume()

    async def kill() -> None:
        await asyncio.to_thread(redis.kill)

    async def restart() -> None:
        await asyncio.to_thread(redis.restart_empty)

    seconds = options.phase_seconds
    return [
        Phase(WARMUP, 2, "not reported"),
        Phase("baseline", seconds, "Redis healthy"),
        Phase("hang", seconds, "SIGSTOP, SIGCONT at the end", hang, resume),
        Phase("recovery", seconds, "Redis healthy again"),
        Phase("killed", options.down_seconds, "SIGKILL, restarted empty at the end", kill, restart),
        Phase("restarted", seconds, "Redis empty, same port"),
    ]


@dataclass(slots=True)
class Sample:
    phase: str
    sent: float  # seconds since the load started
    latency: float  # seconds, from send to full answer
    lag: float  # seconds behind the schedule at send
    status: int  # 0: transport error
    degraded: bool = False
    applied: bool = False
    error: str = ""


class Clock:
    """Which phase is on; the load labels each request with it at send time."""

    def __init__(self) -> None:
        self.phase = WARMUP
        self.started = time.perf_counter()
        self.marks: list[tuple[str, float]] = []
        self.scrapes: list[dict[str, float]] = []  # the service's histogram at each phase start

    def enter(self, phase: str) -> None:
        self.phase = phase
        self.marks.append((phase, time.perf_counter() - self.started))


_BUCKET = re.compile(r"^microbridge_request_seconds_bucket\{([^}]*)\}\s+(\S+)$", re.MULTILINE)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def assemble_buckets(text: str) -> dict[str, float]:
    """`le` -> cumulative count of `POST /v1/assemble` answers (all statuses) in the service's
    own latency histogram (`microbridge_request_seconds`)."""
    buckets: dict[str, float] = {}
    for labels, value in _BUCKET.findall(text):
        named = dict(_LABEL.findall(labels))
        if named.get("route") == PATH and named.get("method") == "POST":
            buckets[named["le"]] = buckets.get(named["le"], 0.0) + float(value)
    return buckets


async def scrape(port: int) -> dict[str, float]:
    """GET /metrics on a connection of its own; {} when it fails."""
    request = f"GET /metrics HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n"
    with contextlib.suppress(OSError, EOFError, ValueError, TimeoutError):
        async with asyncio.timeout(2):
            reader, writer = await asyncio.open_connection(HOST, port)
            try:
                writer.write(request.encode())
                answer = await reader.read()
            finally:
                writer.close()
            return assemble_buckets(answer.partition(b"\r\n\r\n")[2].decode())
    return {}


def read_answer(sample: Sample, body: bytes) -> None:
    with contextlib.suppress(orjson.JSONDecodeError, TypeError, KeyError, AttributeError):
        answer: dict[str, Any] = orjson.loads(body)
        sample.degraded = bool(answer.get("degraded"))
        hero: dict[str, Any] = next(
            (s for s in answer["slots"] if s.get("slot") == "home.hero"), {}
        )
        sample.applied = hero.get("variant") == EXPECTED_HERO


class RawClient:
    """A minimal HTTP/1.1 keep-alive client for the one request this benchmark sends. The load
    must cost little CPU: on this shared 2-core machine httpx managed about 90 assembles/s and got
    slower with concurrency (16 in flight: 50/s, p50 170 ms) while this client drove the same
    service at 300-380/s, so with httpx the figures measure the client. A connection that fails
    or times out is dropped, never reused; one is opened whenever none is idle."""

    def __init__(self, host: str, port: int, path: str, body: bytes) -> None:
        self._host, self._port = host, port
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self._request = head.encode() + body
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened = 0

    async def post(self) -> tuple[int, bytes]:
        if self._idle:
            reader, writer = self._idle.pop()
        else:
            reader, writer = await asyncio.open_connection(self._host, self._port)
            self.opened += 1
        try:
            writer.write(self._request)
            status = int((await reader.readline()).split()[1])
            length: int | None = None
            keep = True
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    keep = False
            if length is None:
                raise ValueError("answer without Content-Length")
            body = await reader.readexactly(length)
        except BaseException:
            writer.close()
            raise
        if keep:
            self._idle.append((reader, writer))
        else:
            writer.close()
        return status, body

    async def aclose(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


class HttpxClient:
    """The same request through httpx (`--client httpx`), for comparison."""

    def __init__(self, url: str) -> None:
        limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
        self._client = httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(REQUEST_TIMEOUT))
        self._url = url

    async def post(self) -> tuple[int, bytes]:
        response = await self._client.post(self._url, content=ASSEMBLE_BODY, headers=HEADERS)
        return response.status_code, response.content

    async def aclose(self) -> None:
        await self._client.aclose()


Client = RawClient | HttpxClient
CLIENT_ERRORS = (OSError, EOFError, ValueError, IndexError, TimeoutError, httpx.HTTPError)


async def one_request(client: Client, clock: Clock, lag: float, samples: list[Sample]) -> None:
    phase = clock.phase
    started = time.perf_counter()
    sample = Sample(phase, started - clock.started, 0.0, lag, 0)
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT):
            sample.status, body = await client.post()
        read_answer(sample, body)
    except CLIENT_ERRORS as exc:
        sample.error = f"{type(exc).__name__}: {exc}"[:200]
    sample.latency = time.perf_counter() - started
    samples.append(sample)


async def run_phases(port: int, phases: Sequence[Phase], clock: Clock, done: asyncio.Event) -> None:
    try:
        for phase in phases:
            clock.enter(phase.name)
            ends = time.perf_counter() + phase.seconds
            print(f"  {phase.name:<10} {phase.seconds:>4.1f} s  {phase.what}", flush=True)
            if phase.at_start is not None:
                await phase.at_start()
            # Once the fault is in place: the service's histogram between two scrapes then
            # covers what the client labels with this phase (give or take the answers in flight).
            clock.scrapes.append(await scrape(port))
            await asyncio.sleep(max(0.0, ends - time.perf_counter()))
            if phase.at_end is not None:
                await phase.at_end()
    finally:
        done.set()


def make_client(port: int, options: Options) -> Client:
    if options.client == "httpx":
        return HttpxClient(f"http://{HOST}:{port}{PATH}")
    return RawClient(HOST, port, PATH, ASSEMBLE_BODY)


async def drive(port: int, phases: Sequence[Phase], options: Options) -> tuple[Clock, list[Sample]]:
    """Send at `options.rate` on a fixed schedule until the last phase ends, then wait for the
    answers still in flight (each request's own timeout bounds that)."""
    samples: list[Sample] = []
    pending: set[asyncio.Task[None]] = set()
    client = make_client(port, options)
    try:
        clock = Clock()
        done = asyncio.Event()
        controller = asyncio.create_task(run_phases(port, phases, clock, done))
        loop = asyncio.get_running_loop()
        interval = 1.0 / options.rate
        start = loop.time()
        sent = 0
        while not done.is_set():
            due = start + sent * interval
            # Always yield, even when behind schedule: the answers are read on this loop too.
            await asyncio.sleep(max(0.0, due - loop.time()))
            if done.is_set():
                break
            lag = max(0.0, loop.time() - due)
            task = asyncio.create_task(one_request(client, clock, lag, samples))
            pending.add(task)
            task.add_done_callback(pending.discard)
            sent += 1
        await controller
        if pending:
            await asyncio.wait(pending, timeout=REQUEST_TIMEOUT + 5)
        clock.scrapes.append(await scrape(port))
    finally:
        await client.aclose()
    return clock, samples


# ---------------------------------------------------------------- statistics


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0 when empty)."""
    if not ordered:
        return 0.0
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100)
    return ordered[int(rank) - 1]


@dataclass(slots=True)
class PhaseResult:
    phase: str
    seconds: float
    what: str
    count: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    non_2xx: int = 0
    transport_errors: int = 0
    degraded: int = 0
    profile_applied: int = 0
    max_client_lag_ms: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    server: ServerView | None = None


@dataclass(slots=True)
class ServerView:
    """The phase as the service's own histogram saw it: answers finished between the phase's
    start and the next one's, timed from the request's arrival to its last byte (so without the
    client, the network, or time spent waiting to be accepted or read)."""

    count: int
    over_50ms: int
    over_100ms: int
    p99_at_most_ms: float | None  # the histogram bucket that holds the p99; None: above 1 s


def server_view(before: dict[str, float], after: dict[str, float]) -> ServerView | None:
    if not before or not after:
        return None
    delta = {le: after.get(le, 0.0) - before.get(le, 0.0) for le in after}
    count = delta.get("+Inf", 0.0)

    def over(bound: str) -> int:
        return int(count - delta.get(bound, 0.0))

    p99: float | None = None
    for le, cumulative in sorted(
        ((le, c) for le, c in delta.items() if le != "+Inf"), key=lambda x: float(x[0])
    ):
        if count and cumulative >= 0.99 * count:
            p99 = float(le) * 1000
            break
    return ServerView(int(count), over("0.05"), over("0.1"), p99)


def summarize(phase: Phase, samples: Sequence[Sample]) -> PhaseResult:
    mine = [s for s in samples if s.phase == phase.name]
    ordered = sorted(s.latency * 1000 for s in mine)
    result = PhaseResult(phase.name, phase.seconds, phase.what, count=len(mine))
    result.p50_ms = percentile(ordered, 50)
    result.p99_ms = percentile(ordered, 99)
    result.max_ms = ordered[-1] if ordered else 0.0
    result.non_2xx = sum(not 200 <= s.status < 300 for s in mine)
    result.transport_errors = sum(s.status == 0 for s in mine)
    result.degraded = sum(s.degraded for s in mine)
    result.profile_applied = sum(s.applied for s in mine)
    result.max_client_lag_ms = max((s.lag * 1000 for s in mine), default=0.0)
    for s in mine:
        result.statuses[str(s.status)] = result.statuses.get(str(s.status), 0) + 1
    result.errors = sorted({s.error for s in mine if s.error})[:5]
    return result


def timeline(samples: Sequence[Sample]) -> list[dict[str, Any]]:
    buckets: dict[int, list[Sample]] = {}
    for s in samples:
        buckets.setdefault(int(s.sent / TIMELINE_STEP), []).append(s)
    rows = []
    for index in sorted(buckets):
        group = buckets[index]
        ordered = sorted(s.latency * 1000 for s in group)
        rows.append(
            {
                "t": round(index * TIMELINE_STEP, 2),
                "phase": group[0].phase,
                "count": len(group),
                "p50Ms": round(percentile(ordered, 50), 2),
                "maxMs": round(ordered[-1], 2),
                "non2xx": sum(not 200 <= s.status < 300 for s in group),
                "degraded": sum(s.degraded for s in group),
            }
        )
    return rows


def slowest(samples: Sequence[Sample], count: int = 20) -> list[dict[str, Any]]:
    worst = sorted((s for s in samples if s.phase != WARMUP), key=lambda s: -s.latency)
    return [
        {
            "phase": s.phase,
            "sentAt": round(s.sent, 4),
            "latencyMs": round(s.latency * 1000, 2),
            "status": s.status,
            "degraded": s.degraded,
            "error": s.error,
        }
        for s in worst[:count]
    ]


# ---------------------------------------------------------------- run, report


@dataclass(slots=True)
class Run:
    options: Options
    check: str
    results: list[PhaseResult]
    marks: list[tuple[str, float]]
    timeline: list[dict[str, Any]]
    slowest: list[dict[str, Any]]
    redis_port: int

    def phase(self, name: str) -> PhaseResult:
        return next(r for r in self.results if r.phase == name)

    @property
    def goal_p99_ms(self) -> float:
        return 2 * self.options.budget * 1000

    @property
    def goal_met(self) -> bool:
        hang = self.phase("hang")
        return hang.count > 0 and hang.p99_ms <= self.goal_p99_ms and hang.non_2xx == 0

    @property
    def failed(self) -> bool:
        return not self.check.startswith("ok") or any(r.non_2xx for r in self.results)


def run(options: Options, log: Path) -> Run:
    with faulty_redis() as redis:
        asyncio.run(write_profile(redis.server.url))
        port = free_port()
        base = f"http://{HOST}:{port}"
        env = clean_env(
            REDIS_URL=redis.server.url,
            BRIDGE_LOG_LEVEL="warning",
            DECISIONS_READ_BUDGET_SECONDS=repr(options.budget),
        )
        command = [sys.executable, "cli.py", "serve", "--host", HOST, "--port", str(port)]
        print(f"redis-server on {HOST}:{redis.server.port}; service on {base}", flush=True)
        with spawned(command, env, log):
            wait_ready(f"{base}/readyz", log)
            check = check_assemble(f"{base}{PATH}")
            print(f"  check: {check}", flush=True)
            print(f"load: {options.rate:.0f} assembles/s, open loop, {options.client} client")
            phases = plan(redis, options)
            clock, samples = asyncio.run(drive(port, phases, options))
        results = []
        for index, phase in enumerate(phases):
            if phase.name == WARMUP:
                continue
            result = summarize(phase, samples)
            if index + 1 < len(clock.scrapes):
                result.server = server_view(clock.scrapes[index], clock.scrapes[index + 1])
            results.append(result)
        return Run(
            options=options,
            check=check,
            results=results,
            marks=clock.marks,
            timeline=timeline(samples),
            slowest=slowest(samples),
            redis_port=redis.server.port,
        )


def print_run(result: Run) -> None:
    print(
        f"\n{'phase':<10} {'count':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        f"{'non-2xx':>8} {'degraded':>9} {'profile':>8} {'lag ms':>7}"
    )
    for r in result.results:
        print(
            f"{r.phase:<10} {r.count:>6} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {r.max_ms:>8.2f} "
            f"{r.non_2xx:>8} {r.degraded:>9} {r.profile_applied:>8} {r.max_client_lag_ms:>7.1f}"
        )
    print(
        f"\nthe service's own histogram, same phases\n{'phase':<10} {'count':>6} "
        f"{'> 50 ms':>8} {'> 100 ms':>9} {'p99 <=':>8}"
    )
    for r in result.results:
        if r.server is None:
            print(f"{r.phase:<10} (no /metrics scrape)")
            continue
        v = r.server
        p99 = f"{v.p99_at_most_ms:.0f} ms" if v.p99_at_most_ms is not None else "> 1 s"
        print(f"{r.phase:<10} {v.count:>6} {v.over_50ms:>8} {v.over_100ms:>9} {p99:>8}")
    for r in result.results:
        if r.non_2xx:
            print(f"  {r.phase}: statuses {r.statuses}; errors {r.errors}")
    print(
        "  profile: answers with the stored profile applied; lag: the client's worst delay "
        "behind its schedule"
    )
    hang = result.phase("hang")
    verdict = "met" if result.goal_met else "NOT met"
    print(
        f"goal: hang p99 {hang.p99_ms:.1f} ms <= {result.goal_p99_ms:.0f} ms (2x the "
        f"{result.options.budget * 1000:.0f} ms budget) and zero non-2xx ({hang.non_2xx}): "
        f"{verdict}"
    )


def write_results(result: Run, stamp: str) -> Path:
    document = {
        "timestamp": stamp,
        "revision": git_revision(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg": os.getloadavg(),
        },
        "options": asdict(result.options),
        "check": result.check,
        "goal": {
            "hangP99Ms": result.goal_p99_ms,
            "non2xx": 0,
            "met": result.goal_met,
        },
        "phases": [asdict(r) for r in result.results],
        "marks": [{"phase": name, "at": round(at, 3)} for name, at in result.marks],
        "slowest": result.slowest,
        "timeline": result.timeline,
    }
    path = save_result("faults", stamp, document)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    log = RESULTS / f"faults-{stamp}-service.log"
    result = run(options, log)
    print_run(result)
    print(f"\nresults: {write_results(result, stamp).relative_to(ROOT)}")
    print(f"service output: {log.relative_to(ROOT)}")
    if result.failed:
        print(
            f"\n!!!!! NON-2XX ANSWERS OR A FAILED CHECK ({result.check}): see the table. !!!!!",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
