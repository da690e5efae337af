"""`cli.py train`: fit and publish the ranking model with a progress bar; a one-line summary."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from assembly.insights.command import parse_window
from assembly.learning.config import LearningSettings
from assembly.learning.service import TrainRequest, train
from core.progress import stage_bars
from core.redis import connect, keys_for
from core.settings import StoreSettings
from segment_sync.stream.pipeline import streams as event_streams


async def run_command(
    store: StoreSettings,
    *,
    goal: str,
    window: str,
    publish: bool,
    settings: LearningSettings,
    console: Console,
    shards: int = 1,
) -> tuple[str, dict[str, Any]]:
    """What `cli.py train` runs; `shards`: the event stream's (`SEGMENT_STREAM_SHARDS`), every
    one of them is read for goal events."""
    request = TrainRequest(goal=goal, window_seconds=parse_window(window), publish=publish)
    redis, _ = connect(store)
    try:
        with stage_bars(console) as progress:
            keys = keys_for(store)
            streams = event_streams(keys, shards)
            summary = await train(
                redis, keys, request, settings, streams=streams, progress=progress
            )
    finally:
        await redis.aclose()
    return _line(summary), summary


def _line(summary: dict[str, Any]) -> str:
    slots = ", ".join(
        f"{key} (auc {s['auc']:.3f}, {len(s['variants'])} variants)"
        if s["auc"] is not None
        else f"{key} ({len(s['variants'])} variants)"
        for key, s in summary["slots"].items()
    )
    where = (
        f"published as version {summary['version']}" if summary["published"] else "not published"
    )
    truncated = f"; truncated by {', '.join(summary['truncated'])}" if summary["truncated"] else ""
    return (
        f"train {summary['goal']!r}: {summary['exposures']} exposures, "
        f"{summary['converted']} converted; {slots}; {where}{truncated} "
        f"({summary['seconds']} s)"
    )
