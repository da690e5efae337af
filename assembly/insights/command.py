"""`cli.py insights`: run discovery against the shared store with a progress bar, write reports."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis
from rich.console import Console

from assembly.insights.config import InsightsSettings
from assembly.insights.exceptions import InvalidWindow
from assembly.insights.reader import Bounds
from assembly.insights.service import run_insights, write_reports
from core.progress import stage_bars
from core.redis import Keys, connect, keys_for
from core.settings import StoreSettings
from segment_sync.stream.pipeline import streams as event_streams

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_window(text: str) -> float:
    """`7d`, `24h`, `30m`, `90s` → seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if match is None or float(match.group(1)) <= 0:
        raise InvalidWindow(f"window {text!r}: use a number and s, m, h or d (7d, 24h)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def bounds_of(settings: InsightsSettings) -> Bounds:
    return Bounds(
        max_visitors=settings.max_visitors,
        max_events=settings.max_events,
        time_budget_seconds=settings.time_budget_seconds,
    )


async def insights_command(
    redis: Redis,
    keys: Keys,
    *,
    goal: str,
    window: str,
    out: Path,
    settings: InsightsSettings,
    console: Console,
    shards: int = 1,
) -> tuple[dict[str, Any], Path, Path]:
    seconds = parse_window(window)
    with stage_bars(console) as progress:
        report = await run_insights(
            redis,
            keys,
            goal=goal,
            window_seconds=seconds,
            bounds=bounds_of(settings),
            streams=event_streams(keys, shards),
            progress=progress,
        )
    json_path, html_path = write_reports(report, out)
    return report, json_path, html_path


async def run_command(
    store: StoreSettings,
    *,
    goal: str,
    window: str,
    out: Path | None,
    console: Console,
    shards: int = 1,
) -> str:
    """What `cli.py insights` runs: one client, the reports written, a one-line summary back.
    `shards`: the event stream's (`SEGMENT_STREAM_SHARDS`), every one of them is read."""
    settings = InsightsSettings()
    redis, _ = connect(store)
    try:
        report, json_path, html_path = await insights_command(
            redis,
            keys_for(store),
            goal=goal,
            window=window,
            out=out or settings.dir,
            settings=settings,
            console=console,
            shards=shards,
        )
    finally:
        await redis.aclose()
    triggers = ", ".join(orjson.dumps(c["condition"]).decode() for c in report["candidates"][:3])
    return (
        f"insights {goal!r}: {report['visitors']} visitors, {report['converted']} converted; "
        f"top triggers: {triggers or 'none'}; wrote {json_path} and {html_path}"
    )
