"""`cli.py train` on a generated history: exposures in the decision log, goal events in the
event stream (written through the real producer), a planted ground truth, and the bounds.

Ground truth: three hero variants shown at random. Cart abandoners convert 3x more on
`hero-cart`; video watchers prefer `hero-video`; `hero-returning` is worse for everyone.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis

from assembly.decisions.visitor import Visitor
from assembly.learning.artifact import decode
from assembly.learning.compiled import CompiledModel, VisitorScores
from assembly.learning.data import Bounds, Recorded, read_goals
from assembly.learning.store import ModelStore
from core.redis import Keys
from segment_sync.stream.pipeline import TRACKING, enqueue
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
GOAL = "Order Completed"
VARIANTS = ("hero-cart", "hero-video", "hero-returning")
PAGES_PER_VISITOR = 13


def chance(variant: str, cart: bool, video: bool) -> float:
    if variant == "hero-returning":
        return 0.03
    if variant == "hero-cart":
        return 0.24 if cart else 0.08
    return 0.20 if video else 0.05


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def _record(i: int, at: float, variant: str, cart: bool, video: bool) -> bytes:
    signals: dict[str, Any] = {"cartAbandoned": cart, "visits": 1 + i % 4}
    if video:
        signals["engagement"] = {"video": 2.5}
    return orjson.dumps(
        {
            "id": f"d{i}",
            "at": datetime.fromtimestamp(at, UTC).isoformat(),
            "request": {"template": "home", "user": {"id": f"u{i}"}, "context": {}},
            "profile": {"signals": signals, "traits": {"plan": ("free", "pro")[i % 2]}},
            "slots": [
                {
                    "slot": "home.hero",
                    "variant": variant,
                    "source": "variant",
                    "reason": "",
                    "experiment": None,
                },
                {
                    "slot": "home.tip",
                    "variant": None,
                    "source": "baseline",
                    "reason": "",
                    "experiment": None,
                },
            ],
        }
    )


async def plant(redis: Redis, keys: Keys, visitors: int, seed: int, now: float) -> int:
    """Write the history; returns how many events went to the stream."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    written = 0
    async with redis.pipeline(transaction=False) as pipe:
        for i in range(visitors):
            at = now - 2 * 86400 + i
            cart, video = rng.random() < 0.3, rng.random() < 0.25
            variant = rng.choice(VARIANTS)
            pipe.xadd(keys.decision_log, {"r": _record(i, at, variant, cart, video)})
            user = f"u{i}"
            events += [
                {"type": "page", "userId": user, "timestamp": _iso(at - 60 * (k + 1))}
                for k in range(PAGES_PER_VISITOR)
            ]
            if rng.random() < chance(variant, cart, video):
                events.append(
                    {"type": "track", "event": GOAL, "userId": user, "timestamp": _iso(at + 600)}
                )
            if len(events) >= 2000:
                await enqueue(redis, keys, events, TRACKING)
                written, events = written + len(events), []
        await pipe.execute()
    if events:
        await enqueue(redis, keys, events, TRACKING)
        written += len(events)
    return written


def train_cli(
    redis_url: str, prefix: str, out: Path, *flags: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "LEARNING_"))}
    env.update(REDIS_URL=redis_url, REDIS_KEY_PREFIX=prefix)
    command = [sys.executable, str(ROOT / "cli.py"), "train", "--goal", GOAL, "--window", "7d"]
    return subprocess.run(
        [*command, "--out", str(out), *flags],
        cwd=out.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _visitor(cart: bool, video: bool) -> Visitor:
    signals: dict[str, Any] = {"cartAbandoned": cart, "visits": 2}
    if video:
        signals["engagement"] = {"video": 2.5}
    doc = {"signals": signals, "traits": {"plan": "free"}}
    return Visitor(None, None, None, frozenset(), frozenset(), True, doc)


def test_train_on_a_100k_event_history_stays_in_its_bounds_and_finds_the_truth(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    prefix, visitors = "mbtrain", 7700
    keys = Keys(prefix)

    async def seed() -> int:
        client = Redis.from_url(redis_server.url)
        await client.flushall()
        written = await plant(client, keys, visitors, seed=7, now=time.time())
        await client.aclose()
        return written

    events = asyncio.run(seed())
    assert events >= 100_000
    out = tmp_path / "summary.json"
    bounds = ("--max-decisions", "20000", "--max-events", "150000", "--time-budget", "300")
    result = train_cli(redis_server.url, prefix, out, *bounds)
    assert result.returncode == 0, result.stderr
    assert "published as version 1" in result.stderr
    summary = orjson.loads(out.read_bytes())
    assert summary["bounds"] == {
        "maxDecisions": 20000,
        "maxEvents": 150000,
        "timeBudgetSeconds": 300.0,
    }
    assert summary["decisionsRead"] == visitors
    assert summary["eventsRead"] == events
    assert summary["truncated"] == []
    assert summary["exposures"] == visitors  # one per visitor: home.tip showed its baseline
    hero = summary["slots"]["home.hero"]
    assert set(hero["variants"]) == set(VARIANTS)
    assert hero["auc"] > 0.6

    async def published() -> bytes | None:
        client = Redis.from_url(redis_server.url)
        raw = await ModelStore(client, keys).artifact(1)
        await client.aclose()
        return raw

    raw = asyncio.run(published())
    assert raw is not None
    assert len(raw) < 20_000
    model = CompiledModel(decode(raw))
    best = {}
    for segment, (cart, video) in {
        "cart": (True, False),
        "video": (False, True),
        "others": (False, False),
    }.items():
        scores = VisitorScores(model, _visitor(cart, video))
        best[segment] = max(VARIANTS, key=lambda v: scores.score("home.hero", v) or 0.0)
    assert best == {"cart": "hero-cart", "video": "hero-video", "others": "hero-cart"}


def test_train_stops_at_its_caps_and_still_fits(redis_server: RedisServer, tmp_path: Path) -> None:
    prefix = "mbtraincap"
    keys = Keys(prefix)

    async def seed() -> None:
        client = Redis.from_url(redis_server.url)
        for key in await client.keys(f"{prefix}:*"):
            await client.delete(key)
        await plant(client, keys, 1500, seed=9, now=time.time())
        await client.aclose()

    asyncio.run(seed())
    out = tmp_path / "summary.json"
    result = train_cli(
        redis_server.url,
        prefix,
        out,
        "--max-decisions",
        "1000",
        "--max-events",
        "5000",
        "--no-publish",
    )
    assert result.returncode == 0, result.stderr
    summary = orjson.loads(out.read_bytes())
    assert summary["decisionsRead"] == 1000
    assert summary["eventsRead"] == 5000
    assert summary["truncated"] == ["max_decisions", "max_events"]
    assert summary["published"] is False
    assert summary["version"] is None
    assert "not published" in result.stderr


def test_too_little_data_is_a_one_line_error(redis_server: RedisServer, tmp_path: Path) -> None:
    result = train_cli(redis_server.url, "mbtrainempty", tmp_path / "summary.json")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("no slot has a variant with 30 exposures")
    assert len(result.stderr.strip().splitlines()) == 1


async def test_goals_of_several_events_are_read_in_one_pass_within_one_budget(redis: Redis) -> None:
    keys = Keys("goalpass")
    events = [
        {"type": "track", "event": goal, "userId": f"u{i}", "messageId": f"{goal}-{i}"}
        for goal in ("Order Completed", "Signed Up")
        for i in range(3)
    ]
    await enqueue(redis, keys, events, TRACKING)
    recorded = Recorded([])
    goals = await read_goals(
        redis,
        keys,
        goals={"Order Completed", "Signed Up"},
        since=0.0,
        bounds=Bounds(max_events=len(events)),
        recorded=recorded,
    )
    assert {goal: sorted(times) for goal, times in goals.items()} == {
        "Order Completed": ["u:u0", "u:u1", "u:u2"],
        "Signed Up": ["u:u0", "u:u1", "u:u2"],
    }
    assert recorded.events_read == len(events)  # the budget covered the stream once
