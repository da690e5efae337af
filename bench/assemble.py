"""Benchmark of `POST /v1/assemble`, against a hello-world FastAPI app under the same uvicorn.

What is measured, and how (`make bench`, or `uv run python -m bench.assemble --duration 5`):

HTTP (skipped with `--skip-http`)
    A private `redis-server` on a free 127.0.0.1 port (never 6379) holds the profile of the
    benchmark visitor (`bench-user`: audience `cart_abandoners`, a few signals), written with
    `RedisProfileStore`, so every assemble does its real pipelined profile read. The service runs
    as `python cli.py serve` on the demo space (Contentful unset); the baseline is
    `bench/hello.py`, a bare FastAPI app run with the same uvicorn settings (one worker, uvloop,
    httptools, no access log, log level warning). Both run at once, idle but for the load: one
    response of each is checked, `wrk --latency` warms each up for 2 s, then drives them in
    turn, in `--rounds` alternating rounds that add up to `--duration` seconds per target,
    with a Lua script that POSTs a JSON body. Reported per target: the median round's
    requests/s, p50 and p99 latency, non-2xx responses and socket errors over all rounds; and
    the ratio of assemble to hello-world requests/s, the median of the rounds' ratios (the goal
    is at least 0.5x), so a drift of the machine's speed during the run cancels out. The
    server under test gets the first CPU to itself; wrk (`--threads 1`) and Redis share the
    others (bench/placement.py says why; `--no-pin` turns it off).

In process
    The library compiled from the demo space and a visitor built from the same request and
    profile, timed with `time.perf_counter` (garbage collector on, median of several repeats):
    parsing the request body, building the visitor, one `assembly.decisions.rules.decide` per slot
    (for a fresh visitor per page view, as in a request, and with the visitor's audience memo
    warm), and
    `AssemblyService.assemble` without HTTP, its profile read answered by an in-memory stub.

Results are printed as a table and written to `bench/results/assemble-<UTC timestamp>.json`.
Timings are reported, never asserted; this module is not part of the test suite. A run with
non-2xx responses or socket errors says so and exits with status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis

from assembly.decisions.rules import decide
from assembly.decisions.visitor import Visitor, build_visitor
from assembly.fallback import FallbackLibrary
from assembly.ports import Profile, ProfileOnly
from assembly.schemas import AssembleRequest
from assembly.service import AssemblyService
from bench.placement import Placement, move, on_cpus
from bench.report import save_result
from core.logging import configure_logging
from core.redis import Keys
from integration.demo import DemoSource
from integration.library import Library, compile_library
from integration.model import Slot
from integration.normalize import normalize_items
from integration.store import StoredContent
from segment_sync.profiles.store import RedisProfileStore
from tests.support.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
WARMUP_SECONDS = 2
GOAL_RATIO = 0.5
REPEATS = 7
PASSES = 2000  # page views per in-process repeat

BENCH_USER = "bench-user"
BENCH_AUDIENCES = frozenset({"cart_abandoners"})
BENCH_SIGNALS: dict[str, Any] = {"visits": 3, "dwell": {"sku-1001": 45}}
TEMPLATE = "home"
ASSEMBLE_BODY = orjson.dumps({"template": TEMPLATE, "user": {"id": BENCH_USER}, "sessionId": "s1"})
HELLO_BODY = orjson.dumps({"name": "bench"})
EXPECTED_HERO = "hero-cart"  # what the stored audience earns the visitor on home.hero


# ---------------------------------------------------------------- options


@dataclass(frozen=True, slots=True)
class Options:
    duration: int
    connections: int
    threads: int
    skip_http: bool
    pin: bool = True
    rounds: int = 5

    @property
    def placement(self) -> Placement:
        return Placement.choose(self.pin)


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.assemble",
        description="Benchmark POST /v1/assemble against a hello-world FastAPI app.",
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per target (10)")
    parser.add_argument(
        "--rounds", type=int, default=5, help="alternating rounds the duration is split in (5)"
    )
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (1)")
    parser.add_argument("--skip-http", action="store_true", help="in-process timings only")
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="let the scheduler place the server, Redis and wrk (noisier on 2 cores)",
    )
    args = parser.parse_args(argv)
    if args.duration < 1 or args.threads < 1 or args.connections < args.threads:
        parser.error("need --duration >= 1, --threads >= 1 and --connections >= --threads")
    if not 1 <= args.rounds <= args.duration:
        parser.error("need 1 <= --rounds <= --duration (rounds last whole seconds)")
    return Options(
        args.duration,
        args.connections,
        args.threads,
        args.skip_http,
        pin=not args.no_pin,
        rounds=args.rounds,
    )


# ---------------------------------------------------------------- in-process timings


@dataclass(frozen=True, slots=True)
class Fixture:
    library: Library
    request: AssembleRequest
    profile: Profile
    slots: tuple[Slot, ...]


@dataclass(frozen=True, slots=True)
class InProcessResult:
    repeats: int
    passes: int
    slots: int
    parse_request_us: float
    build_visitor_us: float
    decide_per_slot_us: float
    decide_per_slot_warm_memo_us: float
    decide_page_us: float
    assemble_us: float
    decisions: dict[str, str]


@dataclass(frozen=True, slots=True)
class FixedLibrary:
    """A `LibrarySource` that always answers the same snapshot."""

    library: Library


@dataclass(frozen=True, slots=True)
class StaticProfiles:
    """A `ProfileReader` answering one profile from memory (benchmark input only)."""

    profile: Profile

    async def read(self, user_id: str | None, anonymous_id: str | None) -> Profile | None:
        return self.profile


def demo_library() -> Library:
    """The demo space through normalize → StoredContent → compile, as the service does."""
    source = DemoSource()
    changes = normalize_items(source.fetch_sync_page(None).items)
    entities = {entity.key: entity for entity in changes.upserts}
    content = StoredContent(version=1, entities=entities, locales=source.fetch_locales())
    return compile_library(content)


def build_fixture() -> Fixture:
    library = demo_library()
    request = AssembleRequest.model_validate_json(ASSEMBLE_BODY)
    profile = Profile(audiences=BENCH_AUDIENCES, signals=BENCH_SIGNALS)
    return Fixture(library, request, profile, library.templates[TEMPLATE].slots)


def _seconds(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def _median_us(samples: Sequence[float], ops: int) -> float:
    return statistics.median(samples) / ops * 1e6


def _repeat_us(run: Callable[[], object], ops: int) -> float:
    run()  # warm caches (the library's render cache, pydantic's validators)
    return _median_us([_seconds(run) for _ in range(REPEATS)], ops)


def _parse_requests(count: int) -> None:
    for _ in range(count):
        AssembleRequest.model_validate_json(ASSEMBLE_BODY)


def _build_visitors(fx: Fixture, count: int) -> list[Visitor]:
    return [build_visitor(fx.request, fx.profile) for _ in range(count)]


def _decide_pages(slots: Sequence[Slot], visitors: Sequence[Visitor], now: datetime) -> None:
    for visitor in visitors:
        for slot in slots:
            decide(slot, visitor, now, None)


def time_decide(fx: Fixture, *, fresh: bool) -> float:
    """Seconds per page (all slots): a new visitor per page, or one visitor with a warm memo."""
    now = datetime.now(UTC)
    samples = []
    for _ in range(REPEATS):
        if fresh:
            visitors = _build_visitors(fx, PASSES)
        else:
            visitors = [build_visitor(fx.request, fx.profile)] * PASSES
        samples.append(_seconds(functools.partial(_decide_pages, fx.slots, visitors, now)))
    return statistics.median(samples) / PASSES


async def _assemble_seconds(service: AssemblyService, request: AssembleRequest) -> list[float]:
    await service.assemble(request)
    samples = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        for _ in range(PASSES):
            await service.assemble(request)
        samples.append(time.perf_counter() - started)
    return samples


def time_assemble(fx: Fixture) -> float:
    """Microseconds per `AssemblyService.assemble` call, profile read from memory."""
    service = AssemblyService(
        FixedLibrary(fx.library), ProfileOnly(StaticProfiles(fx.profile)), FallbackLibrary.load()
    )
    return _median_us(asyncio.run(_assemble_seconds(service, fx.request)), PASSES)


def page_decisions(fx: Fixture) -> dict[str, str]:
    visitor = build_visitor(fx.request, fx.profile)
    now = datetime.now(UTC)
    answers = {}
    for slot in fx.slots:
        decision = decide(slot, visitor, now, None)
        variant = decision.variant.key if decision.variant else "-"
        answers[slot.key] = f"{decision.source} {variant} ({decision.reason})"
    return answers


def run_in_process() -> InProcessResult:
    fx = build_fixture()
    slots = len(fx.slots)
    page_fresh = time_decide(fx, fresh=True)
    page_warm = time_decide(fx, fresh=False)
    return InProcessResult(
        repeats=REPEATS,
        passes=PASSES,
        slots=slots,
        parse_request_us=_repeat_us(functools.partial(_parse_requests, PASSES), PASSES),
        build_visitor_us=_repeat_us(functools.partial(_build_visitors, fx, PASSES), PASSES),
        decide_per_slot_us=page_fresh / slots * 1e6,
        decide_per_slot_warm_memo_us=page_warm / slots * 1e6,
        decide_page_us=page_fresh * 1e6,
        assemble_us=time_assemble(fx),
        decisions=page_decisions(fx),
    )


# ---------------------------------------------------------------- subprocesses


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate, then kill when it does not exit within 5 s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def stop_redis(server: RedisServer) -> None:
    process = server.process
    try:
        server.stop()
    except subprocess.TimeoutExpired:
        if process is not None:
            process.kill()
            process.wait(timeout=5)
    shutil.rmtree(server.dir, ignore_errors=True)


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        stop_redis(server)


@contextlib.contextmanager
def spawned(
    command: Sequence[str], env: dict[str, str], log: Path, cpus: frozenset[int] | None = None
) -> Iterator[None]:
    """Run `command` from the repository root (on `cpus`, when given), its output in `log`;
    always stopped after."""
    with log.open("wb") as sink:
        process = subprocess.Popen(
            list(command),
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            preexec_fn=on_cpus(cpus),
        )
        try:
            yield
        finally:
            stop(process)


def clean_env(**extra: str) -> dict[str, str]:
    """The inherited environment without Microbridge settings (so Contentful is unset), plus
    `extra`."""
    prefixes = ("CONTENTFUL_", "REDIS_", "BRIDGE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    headers = {"content-type": "application/json"} if body is not None else {}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def wait_ready(url: str, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if http("GET", url)[0] == 200:
                return
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"{url} not ready after {timeout:.0f} s; server output:\n{tail}")


async def write_profile(redis_url: str) -> None:
    """The bench visitor's stored profile: the audience and signals that earn `EXPECTED_HERO`."""
    redis = Redis.from_url(redis_url)
    try:
        store = RedisProfileStore(redis, Keys("mb"))
        await store.write(user_id=BENCH_USER, audiences=BENCH_AUDIENCES, signals=BENCH_SIGNALS)
    finally:
        await redis.aclose()


# ---------------------------------------------------------------- wrk


@dataclass(slots=True)
class WrkResult:
    target: str
    url: str
    requests_per_second: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    requests: int = 0
    non_2xx: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)
    check: str = ""
    raw: str = ""
    rounds: list[float] = field(default_factory=list)  # req/s of each round

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())

    @property
    def valid(self) -> bool:
        return self.requests > 0 and not self.errors and self.check.startswith("ok")


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_PERCENTILE = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)


def parse_wrk(target: str, url: str, text: str) -> WrkResult:
    result = WrkResult(target=target, url=url, raw=text)
    if match := re.search(r"Requests/sec:\s+([\d.]+)", text):
        result.requests_per_second = float(match[1])
    if match := re.search(r"(\d+) requests in", text):
        result.requests = int(match[1])
    if match := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text):
        result.non_2xx = int(match[1])
    if match := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    ):
        names = ("connect", "read", "write", "timeout")
        result.socket_errors = {n: int(v) for n, v in zip(names, match.groups(), strict=True)}
    for percent, value, unit in _PERCENTILE.findall(text):
        ms = float(value) * _UNIT_MS[unit]
        if percent == "50":
            result.p50_ms = ms
        else:
            result.p99_ms = ms
    return result


def lua_script(name: str, body: bytes, directory: Path) -> Path:
    """A wrk script that POSTs `body` as JSON (a Lua long string needs no escaping)."""
    path = directory / f"{name}.lua"
    path.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [==[{body.decode()}]==]\n"
    )
    return path


def wrk(url: str, script: Path, seconds: int, options: Options) -> str:
    command = [
        "wrk",
        f"--threads={options.threads}",
        f"--connections={options.connections}",
        f"--duration={seconds}s",
        "--latency",
        f"--script={script}",
        url,
    ]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        preexec_fn=on_cpus(options.placement.load),
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def merge(target: str, url: str, rounds: Sequence[WrkResult]) -> WrkResult:
    """One target's rounds as one result: the median round's rate and percentiles, the
    requests and errors of all rounds."""
    merged = WrkResult(target=target, url=url, raw="\n".join(r.raw for r in rounds))
    merged.rounds = [r.requests_per_second for r in rounds]
    merged.requests_per_second = statistics.median(merged.rounds)
    merged.p50_ms = statistics.median(r.p50_ms for r in rounds)
    merged.p99_ms = statistics.median(r.p99_ms for r in rounds)
    merged.requests = sum(r.requests for r in rounds)
    merged.non_2xx = sum(r.non_2xx for r in rounds)
    for r in rounds:
        for name, count in r.socket_errors.items():
            merged.socket_errors[name] = merged.socket_errors.get(name, 0) + count
    return merged


# ---------------------------------------------------------------- the two targets


def check_assemble(url: str) -> str:
    """One request before the load: 200, not degraded, and the stored profile applied."""
    status, body = http("POST", url, ASSEMBLE_BODY)
    if status != 200:
        return f"HTTP {status}: {body[:200]!r}"
    answer: dict[str, Any] = orjson.loads(body)
    hero: dict[str, Any] = next((s for s in answer["slots"] if s["slot"] == "home.hero"), {})
    if answer.get("degraded"):
        return "DEGRADED answer: the profile store was not read"
    if hero.get("variant") != EXPECTED_HERO:
        return f"profile NOT applied: home.hero answered {hero.get('variant')!r}"
    return f"ok: {len(answer['slots'])} slots, home.hero -> {EXPECTED_HERO} ({hero['reason']})"


def check_hello(url: str) -> str:
    status, body = http("POST", url, HELLO_BODY)
    return "ok" if status == 200 else f"HTTP {status}: {body[:200]!r}"


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    url: str
    script: Path
    check: str


def start_service(
    stack: contextlib.ExitStack, redis_url: str, work: Path, options: Options
) -> Target:
    port = free_port()
    base = f"http://{HOST}:{port}"
    log = work / "service.log"
    command = [sys.executable, "cli.py", "serve", "--host", HOST, "--port", str(port)]
    env = clean_env(REDIS_URL=redis_url, BRIDGE_LOG_LEVEL="warning")
    stack.enter_context(spawned(command, env, log, options.placement.server))
    wait_ready(f"{base}/readyz", log)
    url = f"{base}/v1/assemble"
    return Target("assemble", url, lua_script("assemble", ASSEMBLE_BODY, work), check_assemble(url))


def start_hello(stack: contextlib.ExitStack, work: Path, options: Options) -> Target:
    port = free_port()
    base = f"http://{HOST}:{port}"
    log = work / "hello.log"
    command = [sys.executable, "-m", "bench.hello", "--host", HOST, "--port", str(port)]
    stack.enter_context(spawned(command, clean_env(), log, options.placement.server))
    wait_ready(f"{base}/hello", log)
    url = f"{base}/hello"
    return Target("hello-world", url, lua_script("hello", HELLO_BODY, work), check_hello(url))


def drive(targets: Sequence[Target], options: Options) -> list[WrkResult]:
    """Both servers are up; each is warmed, then driven in alternating rounds, so a drift of
    the machine's speed during the run touches both rates alike."""
    seconds = max(1, options.duration // options.rounds)
    for target in targets:
        print(f"  {target.name}: warm-up {WARMUP_SECONDS} s", flush=True)
        wrk(target.url, target.script, WARMUP_SECONDS, options)
    print(f"  {options.rounds} alternating rounds of {seconds} s per target ...", flush=True)
    rounds: dict[str, list[WrkResult]] = {t.name: [] for t in targets}
    for _ in range(options.rounds):
        for target in targets:
            text = wrk(target.url, target.script, seconds, options)
            rounds[target.name].append(parse_wrk(target.name, target.url, text))
    results = []
    for target in targets:
        result = merge(target.name, target.url, rounds[target.name])
        result.check = target.check
        results.append(result)
    return results


def run_http(options: Options) -> list[WrkResult]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: run `make bench`, which installs it")
    with (
        redis_server() as server,
        tempfile.TemporaryDirectory(prefix="mb-bench-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        assert server.process is not None
        move(server.process.pid, options.placement.load)
        asyncio.run(write_profile(server.url))
        print(f"redis-server on {HOST}:{server.port}; profile of {BENCH_USER!r} written")
        print(f"placement: {options.placement.describe()}")
        work = Path(tmp)
        targets = [
            start_service(stack, server.url, work, options),
            start_hello(stack, work, options),
        ]
        return drive(targets, options)


# ---------------------------------------------------------------- report


def ratio(results: Sequence[WrkResult]) -> float | None:
    """Assemble over hello-world req/s: the median of the rounds' ratios (each round of one
    target ran next to the same round of the other)."""
    by_target = {r.target: r for r in results}
    hello, assemble = by_target.get("hello-world"), by_target.get("assemble")
    if hello is None or assemble is None or not hello.requests_per_second:
        return None
    pairs = zip(assemble.rounds, hello.rounds, strict=False)
    ratios = [a / h for a, h in pairs if h]
    if not ratios:
        return assemble.requests_per_second / hello.requests_per_second
    return statistics.median(ratios)


def print_http(results: Sequence[WrkResult], options: Options) -> None:
    print(
        f"\nHTTP: wrk {options.threads} thread(s), {options.connections} connections, "
        f"{options.duration} s per target in {options.rounds} alternating rounds after a "
        f"{WARMUP_SECONDS} s warm-up; "
        f"{options.placement.describe()}"
    )
    print(
        f"{'target':<12} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'sock err':>8}"
    )
    for r in results:
        sock = sum(r.socket_errors.values())
        print(
            f"{r.target:<12} {r.requests_per_second:>10.1f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} "
            f"{r.non_2xx:>8} {sock:>8}"
        )
    for r in results:
        print(f"  check {r.target}: {r.check}")
        print(f"  rounds {r.target}: " + ", ".join(f"{rate:.0f}" for rate in r.rounds) + " req/s")
    value = ratio(results)
    if value is not None:
        verdict = "met" if value >= GOAL_RATIO else "NOT met"
        print(
            f"ratio assemble / hello-world req/s: {value:.2f}x  (goal >= {GOAL_RATIO}x: {verdict})"
        )


def print_in_process(result: InProcessResult) -> None:
    print(
        f"\nIn process (median of {result.repeats} repeats of {result.passes} page views, "
        f"{result.slots} slots per page)"
    )
    rows = [
        ("parse request body", result.parse_request_us),
        ("build visitor", result.build_visitor_us),
        ("decide, per slot (fresh visitor per page)", result.decide_per_slot_us),
        ("decide, per slot (audience memo warm)", result.decide_per_slot_warm_memo_us),
        (f"decide, whole page ({result.slots} slots)", result.decide_page_us),
        ("AssemblyService.assemble (profile stub)", result.assemble_us),
    ]
    for name, value in rows:
        print(f"  {name:<44} {value:>9.2f} µs")
    for slot, decision in result.decisions.items():
        print(f"    {slot:<22} {decision}")


def shout_errors(results: Sequence[WrkResult]) -> bool:
    """Print a loud banner when any target had errors or failed its check; True if so."""
    bad = [r for r in results if not r.valid]
    for r in bad:
        print(
            f"\n!!!!! {r.target.upper()} HAD ERRORS: {r.requests} requests, {r.non_2xx} non-2xx, "
            f"socket errors {r.socket_errors or 'none'}, check: {r.check}. "
            "THESE NUMBERS ARE NOT VALID. !!!!!",
            file=sys.stderr,
        )
    return bool(bad)


def git_revision() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
        )
        return done.stdout.strip()
    return ""


def write_results(
    options: Options, in_process: InProcessResult, results: Sequence[WrkResult], failed: bool
) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    document = {
        "timestamp": stamp,
        "revision": git_revision(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "options": asdict(options),
        "placement": options.placement.to_json(),
        "errors": failed,
        "ratio": ratio(results),
        "goalRatio": GOAL_RATIO,
        "http": [{**asdict(r), "errors": r.errors, "valid": r.valid} for r in results],
        "inProcess": asdict(in_process),
    }
    path = save_result("assemble", stamp, document)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    configure_logging("warning", json=True)
    print("in-process timings ...", flush=True)
    in_process = run_in_process()
    results = [] if options.skip_http else run_http(options)
    print_in_process(in_process)
    if results:
        print_http(results, options)
    failed = shout_errors(results)
    print(f"\nresults: {write_results(options, in_process, results, failed).relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
