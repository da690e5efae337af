"""Read the recorded behaviour for a time window: stream entries and profiles, in bounded batches.

The stream `<prefix>:events` is read with `XRANGE` from the window's first stream id, `batch`
entries a round trip, until its end, `max_events`, `max_visitors` or the time budget. Profiles
(traits, audiences) of the visitors seen are read with pipelined `HMGET`s. Nothing here runs on
a request: `cli.py insights` calls it, and the admin route only serves the finished report.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from redis.asyncio import Redis

from core.progress import Progress, no_progress
from core.redis import Keys, anonymous_visitor, user_visitor
from core.resp import text
from core.streams import pages
from segment_sync.profiles.state import decode_row
from segment_sync.profiles.store import PROFILE_FIELDS
from segment_sync.stream.apply import Entry, entry
from segment_sync.stream.pipeline import decode_entry

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class Bounds:
    max_visitors: int = 50_000
    max_events: int = 200_000
    time_budget_seconds: float = 120.0
    batch: int = 2_000


@dataclass(slots=True)
class Visitor:
    vid: str
    events: list[Entry] = field(default_factory=list)
    traits: dict[str, Any] = field(default_factory=dict)
    audiences: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Recorded:
    visitors: dict[str, Visitor]
    events_read: int
    truncated: list[str]
    window_start: float
    window_end: float


def _visitor_id(message: dict[str, Any]) -> str | None:
    user, anon = message.get("userId"), message.get("anonymousId")
    if isinstance(user, str) and user:
        return user_visitor(user)
    if isinstance(anon, str) and anon:
        return anonymous_visitor(anon)
    return None


class _Collector:
    def __init__(self, bounds: Bounds) -> None:
        self.bounds = bounds
        self.visitors: dict[str, Visitor] = {}
        self.links: dict[str, str] = {}  # anonymous id → user id, from messages naming both
        self.events = 0
        self.truncated: list[str] = []

    def add(self, stream_id: str, fields: dict[bytes, bytes]) -> None:
        try:
            message, source = decode_entry(fields)
        except ValueError:
            return
        vid = _visitor_id(message)
        if vid is None:
            return
        anon = message.get("anonymousId")
        if vid.startswith("u:") and isinstance(anon, str) and anon:
            self.links[anonymous_visitor(anon)] = vid
        visitor = self.visitors.get(vid)
        if visitor is None:
            if len(self.visitors) >= self.bounds.max_visitors:
                self._truncate("max_visitors")
                return
            visitor = self.visitors[vid] = Visitor(vid)
        visitor.events.append(entry(stream_id, message, source))
        self.events += 1

    def _truncate(self, reason: str) -> None:
        if reason not in self.truncated:
            self.truncated.append(reason)

    def merged(self) -> dict[str, Visitor]:
        """Anonymous visitors that later identified join their user (as the consumer links them)."""
        out: dict[str, Visitor] = {}
        for vid, visitor in self.visitors.items():
            target = self.links.get(vid, vid)
            into = out.setdefault(target, Visitor(target))
            into.events.extend(visitor.events)
        for visitor in out.values():
            visitor.events.sort(key=lambda e: (e.at, e.id))
        return out


async def read_recorded(
    redis: Redis,
    keys: Keys,
    *,
    window_seconds: float,
    bounds: Bounds,
    now: float | None = None,
    streams: Sequence[str] | None = None,
    progress: Progress = no_progress,
) -> Recorded:
    """The window's events, from every shard of the event stream (`streams`; default: one
    shard), and the profiles of the visitors they name."""
    end = time.time() if now is None else now
    start = max(0.0, end - window_seconds)  # a window longer than the clock's age: all of it
    deadline = time.monotonic() + bounds.time_budget_seconds
    collector = _Collector(bounds)
    streams = streams or [keys.events_stream]
    await _read_stream(redis, streams, collector, int(start * 1000), deadline, progress)
    visitors = collector.merged()
    await _read_profiles(redis, keys, visitors, bounds.batch, progress)
    log.info(
        "insights.read.done",
        events=collector.events,
        visitors=len(visitors),
        truncated=collector.truncated,
    )
    return Recorded(visitors, collector.events, collector.truncated, start, end)


async def _read_stream(
    redis: Redis,
    streams: Sequence[str],
    collector: _Collector,
    start_ms: int,
    deadline: float,
    progress: Progress,
) -> None:
    bounds = collector.bounds
    async for rows in pages(
        redis,
        streams,
        since_ms=start_ms,
        batch=bounds.batch,
        room=lambda: bounds.max_events - collector.events,
        cap="max_events",
        deadline=deadline,
        stopped=collector._truncate,
    ):
        for raw_id, fields in rows:
            collector.add(text(raw_id), fields)
        progress("events", collector.events, bounds.max_events)


async def _read_profiles(
    redis: Redis, keys: Keys, visitors: dict[str, Visitor], batch: int, progress: Progress
) -> None:
    ids = list(visitors)
    for begin in range(0, len(ids), batch):
        chunk = ids[begin : begin + batch]
        async with redis.pipeline(transaction=False) as pipe:
            for vid in chunk:
                pipe.hmget(keys.profile(vid), PROFILE_FIELDS)
            replies: Sequence[Any] = await pipe.execute()
        for vid, reply in zip(chunk, replies, strict=True):
            row = {n: v for n, v in zip(PROFILE_FIELDS, reply, strict=False) if v is not None}
            state = decode_row(row)
            visitors[vid].traits = state.traits
            visitors[vid].audiences = set(state.audiences)
        progress("profiles", min(begin + batch, len(ids)), len(ids))
