"""The command line, run as a user runs it: a subprocess on the test Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
from redis.asyncio import Redis

from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, redis_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTENTFUL_", "REDIS_"))}
    env.update(REDIS_URL=redis_url, REDIS_KEY_PREFIX="mbcli")
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_sync_prints_a_summary_then_resumes(
    redis: Redis, redis_server: RedisServer, tmp_path: Path
) -> None:
    first = run_cli("sync", redis_url=redis_server.url, cwd=tmp_path)
    second = run_cli("sync", redis_url=redis_server.url, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "sync initial: 1 page(s), 66 upserted" in first.stderr
    assert "sync delta: 1 page(s), 0 upserted" in second.stderr
    assert await redis.exists("mbcli:content:sync_token")
    assert not await redis.exists("mbcli:content:sync_lock")


async def test_fallback_export_writes_every_slot_baseline(
    redis: Redis, redis_server: RedisServer, tmp_path: Path
) -> None:
    out = tmp_path / "fallback.json"
    result = run_cli(
        "fallback", "export", "--output", str(out), redis_url=redis_server.url, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    document = orjson.loads(out.read_bytes())
    assert document["templates"]["home"][0] == "home.hero"
    assert document["slots"]["home.hero"]["entry"]["id"] == "hero-default"
    bundled = orjson.loads((ROOT / "templates" / "fallback.json").read_bytes())
    assert document["slots"] == bundled["slots"], "templates/fallback.json matches the demo space"
