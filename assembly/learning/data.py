"""The training data: logged exposures joined with the goal events that followed them.

- **Exposures** come from the decision log (`<p>:decisions:log`, `assembly.decision_log`): a
  record holds the request and the profile the engine read, and what each slot showed. The
  visitor is rebuilt with the engine's own `build_visitor` at the decision's time, so training
  reads the features a decision saw. Only each visitor's **first** exposure per slot counts
  (later page views of the same visitor are not independent draws); slots that showed their
  baseline are left out (the model ranks variants).
- **Conversions**: a `track` of the goal event in the event stream, by the same userId or
  anonymousId, at most `attribution_seconds` after the exposure. Only goal times are kept.

Both reads go `batch` entries a round trip (`XRANGE`), stop at their cap or the time budget,
and say which one stopped them under `truncated`.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError
from redis.asyncio import Redis

from assembly.decision_log.record import profile_of
from assembly.decisions.visitor import Visitor, build_visitor
from assembly.schemas import AssembleRequest
from core.progress import Progress, no_progress
from core.redis import Keys, anonymous_visitor, user_visitor
from core.resp import text
from core.streams import pages
from segment_sync.stream.apply import entry
from segment_sync.stream.pipeline import decode_entry

_DROPPED_SIGNALS = ("recentEvents", "cart", "at")
_SERVED = ("variant", "experiment")


@dataclass(frozen=True, slots=True)
class Bounds:
    max_decisions: int = 200_000
    max_events: int = 1_000_000
    time_budget_seconds: float = 300.0
    batch: int = 2_000


@dataclass(slots=True)
class Exposure:
    slot: str
    variant: str
    at: float
    ids: tuple[str, ...]  # u:<userId>, a:<anonymousId>
    visitor: Visitor
    converted: bool = False


@dataclass(slots=True)
class Recorded:
    exposures: list[Exposure]
    decisions_read: int = 0
    events_read: int = 0
    goals: int = 0
    truncated: list[str] = field(default_factory=list)


def _same(record: dict[str, Any]) -> dict[str, Any]:
    return record


def _ids(user: Any, anonymous: Any) -> tuple[str, ...]:
    out = []
    if isinstance(user, str) and user:
        out.append(user_visitor(user))
    if isinstance(anonymous, str) and anonymous:
        out.append(anonymous_visitor(anonymous))
    return tuple(out)


def exposures_of(record: dict[str, Any], seen: set[tuple[str, str]]) -> list[Exposure]:
    """The first exposures (per visitor and slot) a decision-log record holds."""
    try:
        request = AssembleRequest.model_validate(record["request"])
        at = datetime.fromisoformat(record["at"]).timestamp()
    except (KeyError, TypeError, ValueError, ValidationError):
        return []
    ids = _ids(request.user.id, request.user.anonymousId)
    if not ids:
        return []
    fresh = [
        s
        for s in record.get("slots", ())
        if s.get("source") in _SERVED and s.get("variant") and (ids[0], s["slot"]) not in seen
    ]
    if not fresh:
        return []
    profile = profile_of(record.get("profile"))
    if profile is not None and profile.signals:
        signals = {k: v for k, v in profile.signals.items() if k not in _DROPPED_SIGNALS}
        profile = dataclasses.replace(profile, signals=signals)
    visitor = build_visitor(request, profile, now=at)
    visitor.doc = {"signals": visitor.doc["signals"], "traits": visitor.doc["traits"]}
    out = []
    for shown in fresh:
        seen.add((ids[0], shown["slot"]))
        out.append(Exposure(shown["slot"], shown["variant"], at, ids, visitor))
    return out


def _decode(
    rows: list[Any], seen: set[tuple[str, str]], shape: Callable[[dict[str, Any]], dict[str, Any]]
) -> list[Exposure]:
    out: list[Exposure] = []
    for _, fields in rows:
        raw = fields.get(b"r")
        if raw is not None:
            out.extend(exposures_of(shape(orjson.loads(raw)), seen))
    return out


async def read_exposures(
    redis: Redis,
    keys: Keys,
    *,
    since: float,
    bounds: Bounds,
    progress: Progress = no_progress,
    shape: Callable[[dict[str, Any]], dict[str, Any]] = _same,
) -> Recorded:
    """The first exposures in the decision log from `since` on; `shape` may rewrite each
    record's slot outcomes first (the contextual bandit reads experiment arms as variants)."""
    recorded = Recorded([])
    seen: set[tuple[str, str]] = set()
    async for rows in pages(
        redis,
        [keys.decision_log],
        since_ms=int(since * 1000),
        batch=bounds.batch,
        room=lambda: bounds.max_decisions - recorded.decisions_read,
        cap="max_decisions",
        deadline=time.monotonic() + bounds.time_budget_seconds,
        stopped=recorded.truncated.append,
    ):
        recorded.decisions_read += len(rows)
        # Decoding a batch is CPU work: in a thread, so that a replica running it (the
        # contextual bandit's fit) keeps answering page views between the GIL's switches.
        recorded.exposures.extend(await asyncio.to_thread(_decode, rows, seen, shape))
        progress("decisions", recorded.decisions_read, bounds.max_decisions)
    return recorded


async def read_goals(
    redis: Redis,
    keys: Keys,
    *,
    goals: Collection[str],
    since: float,
    bounds: Bounds,
    recorded: Recorded,
    streams: Sequence[str] | None = None,
    progress: Progress = no_progress,
) -> dict[str, dict[str, list[float]]]:
    """Goal event → visitor id → sorted times of that event, from `since` on: one pass over the
    event stream's shards (`streams`; default: one shard) for every goal (the pass's event
    budget is shared, so one read per goal would starve the later goals)."""
    times: dict[str, dict[str, list[float]]] = {goal: {} for goal in goals}
    async for rows in pages(
        redis,
        streams or [keys.events_stream],
        since_ms=int(since * 1000),
        batch=bounds.batch,
        room=lambda: bounds.max_events - recorded.events_read,
        cap="max_events",
        deadline=time.monotonic() + bounds.time_budget_seconds,
        stopped=recorded.truncated.append,
    ):
        for raw_id, fields in rows:
            recorded.events_read += 1
            try:
                message, source = decode_entry(fields)
            except ValueError:
                continue
            event = message.get("event")
            found = times.get(event) if message.get("type") == "track" and event else None
            if found is None:
                continue
            at = entry(text(raw_id), message, source).at
            recorded.goals += 1
            for vid in _ids(message.get("userId"), message.get("anonymousId")):
                found.setdefault(vid, []).append(at)
        progress("events", recorded.events_read, bounds.max_events)
    for by_visitor in times.values():
        for visitor_times in by_visitor.values():
            visitor_times.sort()
    return times


def label(exposures: list[Exposure], goals: dict[str, list[float]], attribution: float) -> None:
    """Mark each exposure followed by a goal of the same visitor within `attribution`."""
    for exposure in exposures:
        for vid in exposure.ids:
            found = goals.get(vid)
            if not found:
                continue
            i = bisect.bisect_left(found, exposure.at)
            if i < len(found) and found[i] - exposure.at <= attribution:
                exposure.converted = True
                break
