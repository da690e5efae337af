"""The command line, run as a user runs it: a subprocess on the test Redis."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
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


def run_bare(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CONTENTFUL_", "REDIS_", "BRIDGE_"))
    }
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "args", [("sync",), ("sync", "--full"), ("results", "hero-test"), ("worker",)]
)
def test_store_commands_refuse_the_embedded_store(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = run_bare(*args, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"microbridge: {args[0]} needs the shared store: set REDIS_URL" in lines[0]


def test_a_failing_command_prints_one_line_and_exits_non_zero(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
    result = run_bare("results", "hero-test", cwd=tmp_path, REDIS_URL=dead)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("microbridge: results failed: ConnectionError: ")
    assert "Traceback" not in result.stderr


def test_serve_with_workers_refuses_the_embedded_store(tmp_path: Path) -> None:
    result = run_bare("serve", "--workers", "2", cwd=tmp_path)
    assert result.returncode == 2
    assert "microbridge: serve --workers needs the shared store: set REDIS_URL" in result.stderr
