"""The plumbing the experiment simulations share (`bench.bandit_sim`, `bench.contextual_sim`).

A private `redis-server` and the service (`python cli.py serve` on the demo space, its bandit
schedule sped up: `DECISIONS_BANDIT_UPDATE_SECONDS=0.5`, `DECISIONS_BANDIT_POLL_SECONDS=0.1`;
a read budget of 1 s, so that a busy machine does not turn page views degraded); the demo's
`home.cta` experiment published with the given arms; the wait until the service serves it; the
service's log on stderr when a run fails; the result document under `bench/results/`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx

from bench.assemble import HOST, clean_env, redis_server, spawned, wait_ready
from bench.report import save_result
from tests.assembly.arms import arm_item, experiment_item, slot_item
from tests.support.redis_server import free_port

WRITE_KEY = "bench-write-key"
ADMIN_TOKEN = "bench-admin-token"

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Options:
    visitors: int
    wave: int
    seed: int


def parse_options(
    argv: Sequence[str] | None, *, module: str, doc: str | None, defaults: Options
) -> Options:
    """`--visitors`, `--wave` and `--seed` for the simulation `module`."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc)
    parser.add_argument(
        "--visitors", type=int, default=defaults.visitors, help="visitors per run (%(default)s)"
    )
    parser.add_argument(
        "--wave", type=int, default=defaults.wave, help="visitors per update period"
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="the population's seed")
    args = parser.parse_args(argv)
    return Options(args.visitors, args.wave, args.seed)


def content_items(key: str, mode: str, revision: int, arms: Sequence[str]) -> list[dict[str, Any]]:
    """The demo experiment as `key` in `mode` on home.cta: control and `arms`, equal weights."""
    experiment = experiment_item(coverage=1.0, revision=revision, key=key, seed=key, mode=mode)
    experiment["fields"].pop("controlWeight", None)
    return [
        experiment,
        slot_item(*arms, revision=revision),
        *(arm_item(arm, None, revision=revision) for arm in arms),
    ]


@contextmanager
def service(redis_url: str, work: Path, **extra_env: str) -> Iterator[str]:
    """The service on a free port, its log in `work`; `extra_env` adds settings."""
    port = free_port()
    log = work / f"service-{port}.log"
    env = clean_env(
        REDIS_URL=redis_url,
        SEGMENT_WRITE_KEYS=WRITE_KEY,
        BRIDGE_ADMIN_TOKEN=ADMIN_TOKEN,
        BRIDGE_LOG_LEVEL="warning",
        DECISIONS_BANDIT_UPDATE_SECONDS="0.5",
        DECISIONS_BANDIT_POLL_SECONDS="0.1",
        DECISIONS_BANDIT_MIN_EXPLORATION="0.05",
        # Correctness, not latency: a shared machine must not turn page views degraded
        # (a degraded answer reads and writes no decision state, so nothing is counted).
        DECISIONS_READ_BUDGET_SECONDS="1",
        DECISIONS_BREAKER_FAILURES="1000",
        **extra_env,
    )
    command = [sys.executable, "cli.py", "serve", "--host", HOST, "--port", str(port)]
    with spawned(command, env, log):
        wait_ready(f"http://{HOST}:{port}/readyz", log)
        yield f"http://{HOST}:{port}"


def serve_and_run(simulate: Callable[[str, str], Awaitable[T]], **extra_env: str) -> T:
    """`simulate(service URL, redis URL)` against a private redis and service; the service's
    log goes to stderr when it raises RuntimeError."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        redis_server() as server,
        service(server.url, Path(tmp), **extra_env) as base,
    ):
        try:
            return asyncio.run(_awaited(simulate(base, server.url)))
        except RuntimeError:
            for log in Path(tmp).glob("service-*.log"):
                print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
            raise


async def _awaited(pending: Awaitable[T]) -> T:
    return await pending


async def until_live(probe: Callable[[str], Awaitable[object]], key: str) -> None:
    """Until `probe(visitor)` stops raising RuntimeError (the experiment is served), 20 s."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            await probe(f"probe-{key}")
            return
        except RuntimeError:
            await asyncio.sleep(0.1)
    raise RuntimeError(f"the service never served experiment {key}")


def write_results(doc: dict[str, Any], prefix: str) -> None:
    """`doc` as `bench/results/<prefix>-<UTC timestamp>.json`."""
    save_result(prefix, datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"), doc)


async def results_document(client: httpx.AsyncClient, experiment: str) -> dict[str, Any]:
    """The experiment's results as the admin route serves them."""
    response = await client.get(
        f"/admin/experiments/{experiment}/results",
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=120,
    )
    response.raise_for_status()
    document: dict[str, Any] = response.json()
    return document
