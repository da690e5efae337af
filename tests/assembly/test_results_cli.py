"""`python cli.py results KEY`, run as an operator runs it: a subprocess on the test Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
from redis.asyncio import Redis

from assembly.admin import service as admin
from assembly.store import record_conversion
from tests.assembly.support import assemble, decision_app, runtime, settle
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, redis_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTENTFUL_", "REDIS_"))}
    env.update(REDIS_URL=redis_url, REDIS_KEY_PREFIX="mbtest", COLUMNS="160")
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_results_as_json_and_as_a_table(redis: Redis, redis_server: RedisServer) -> None:
    async with decision_app(redis_server.url) as (app, client):
        for i in range(12):
            await assemble(client, user={"id": f"c{i}"}, sessionId="s")
        await settle(app)
        for i in range(0, 12, 3):
            event = {"type": "track", "event": "Order Completed", "userId": f"c{i}"}
            await record_conversion(redis, runtime(app).keys, event)
        served = await admin.results(runtime(app), "hero-headline-test")
    done = run_cli("results", "hero-headline-test", "--json", redis_url=redis_server.url)
    assert done.returncode == 0, done.stderr
    document = orjson.loads(done.stdout)
    assert document == served, "the CLI and GET /admin/experiments/{key}/results agree"
    arms = document["arms"]
    assert [a["variant"] for a in arms] == ["control", "cta-headline-b"]
    assert sum(a["exposures"] for a in arms) == 12
    assert sum(a["conversions"] for a in arms) == 4
    assert document["status"] == "running"
    assert document["srm"]["threshold"] == 0.001
    table = run_cli("results", "hero-headline-test", redis_url=redis_server.url)
    assert table.returncode == 0, table.stderr
    assert "cta-headline-b" in table.stdout
    assert "(control)" in table.stdout
    assert "SRM chi-square" in table.stdout


async def test_unknown_experiment_exits_1(redis: Redis, redis_server: RedisServer) -> None:
    done = run_cli("results", "no-such-test", redis_url=redis_server.url)
    assert done.returncode == 1
    assert "no experiment 'no-such-test'" in done.stderr
