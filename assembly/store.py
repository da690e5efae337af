"""Decision state in Redis: the hot-path read, the batched writes, test counters, conversions.

The hot path reads a visitor's profile and decision state in ONE pipelined round trip
(`DecisionStateStore.read`). Writes caused by page views are applied off the request path, in
batches (`apply_writes`, driven by `assembly.tasks.DecisionWriter`). Per test (an experiment key
or `rollout:<variant>`) one hash `<p>:decisions:test:<test>` counts, per arm: `visitors:<arm>`
(first assignment), `sessions:<arm>` (exposures, once per visitor and session),
`conversions:<arm>` (visitors who converted, once each); `meta` holds the arms and weights;
`<p>:decisions:tests` is the set of tests that have data.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
import structlog
from redis.asyncio import Redis

from assembly import metrics
from assembly.experiments import conversion_updates
from assembly.ports import Profile
from assembly.readpath import OneRoundTrip, RawCommands
from assembly.state import (
    Assignment,
    DecisionState,
    Exposure,
    PendingWrites,
    TestMeta,
    VisitorWrite,
    decode_assignments,
    session_tag,
)
from core.redis import Keys

log = structlog.get_logger()

EXPERIMENT_VIEWED = "Experiment Viewed"


def state_keys(keys: Keys, user_id: str | None, anonymous_id: str | None) -> list[str]:
    """The visitor's decision-state hashes, the one that writes go to first."""
    names = []
    if user_id:
        names.append(keys.decisions(f"u:{user_id}"))
    if anonymous_id:
        names.append(keys.decisions(f"a:{anonymous_id}"))
    return names


def test_key(keys: Keys, test: str) -> str:
    return f"{keys.prefix}:decisions:test:{test}"


def tests_index(keys: Keys) -> str:
    return f"{keys.prefix}:decisions:tests"


class PipelinedProfiles(Protocol):
    """The profile store's half of the shared read (segment_sync.store.RedisProfileStore)."""

    def queue_read(self, pipe: Any, user_id: str | None, anonymous_id: str | None) -> int: ...

    def decode_rows(
        self, replies: Sequence[Any], user_id: str | None, anonymous_id: str | None
    ) -> Profile | None: ...


class DecisionStateStore:
    """Profile and decision state of a visitor in one pipelined read (DESIGN.md §3).

    The reads go out as one command (`assembly.readpath`): the client CPU of a round trip is
    most of a page view's cost. Errors reach the caller's circuit breaker.
    """

    def __init__(
        self, redis: Redis, keys: Keys, profiles: PipelinedProfiles, pending: PendingWrites
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._profiles = profiles
        self._pending = pending
        self.reads = OneRoundTrip(redis)

    async def read(
        self, user_id: str | None, anonymous_id: str | None, session_id: str | None
    ) -> tuple[Profile | None, DecisionState]:
        states = state_keys(self._keys, user_id, anonymous_id)
        if not states:
            return None, DecisionState()
        commands = RawCommands()
        count = self._profiles.queue_read(commands, user_id, anonymous_id)
        for name in states:
            commands.hgetall(name)
        replies = await self.reads.run(commands)
        profile = self._profiles.decode_rows(replies[:count], user_id, anonymous_id)
        tag = session_tag(session_id or f"~{time.strftime('%Y%m%d', time.gmtime())}")
        state = DecisionState(tuple(replies[count:]), self._pending.of(states), tag, states[0])
        return profile, state


# ---------------------------------------------------------------- batched writes


@dataclass(slots=True)
class _Flush:
    """Which pipeline results phase two of a flush looks at."""

    assignments: list[tuple[int, VisitorWrite, str, Assignment, bool]] = field(default_factory=list)
    exposures: list[tuple[int, VisitorWrite, Exposure]] = field(default_factory=list)


async def apply_writes(
    redis: Redis,
    keys: Keys,
    writes: Sequence[VisitorWrite],
    *,
    ttl_seconds: int,
    metas: dict[str, bytes],
) -> list[dict[str, Any]]:
    """Apply a batch; the "Experiment Viewed" events of the exposures it recorded.

    Phase one writes the visitors' hashes (HSETNX tells a first assignment or exposure from a
    repeat); phase two counts the firsts per test. `metas` remembers the test metadata already
    written by this process.
    """
    plan = _Flush()
    async with redis.pipeline(transaction=False) as pipe:
        for write in writes:
            _queue_visitor(pipe, write, ttl_seconds, plan)
        results = await pipe.execute()
    events: list[dict[str, Any]] = []
    async with redis.pipeline(transaction=False) as pipe:
        for index, _, test, assignment, overwrite in plan.assignments:
            if overwrite or results[index]:
                pipe.hincrby(test_key(keys, test), f"visitors:{assignment.arm}", 1)
        for index, write, exposure in plan.exposures:
            if not results[index]:
                continue
            name = test_key(keys, exposure.test)
            pipe.hincrby(name, f"sessions:{exposure.arm}", 1)
            meta = exposure.meta.encode()
            if metas.get(exposure.test) != meta:
                pipe.hset(name, "meta", meta)
                pipe.sadd(tests_index(keys), exposure.test)
                metas[exposure.test] = meta
            metrics.EXPOSURES.labels(kind=exposure.meta.kind).inc()
            if exposure.meta.kind == "experiment":
                events.append(experiment_viewed(write, exposure))
        await pipe.execute()
    return events


def _queue_visitor(pipe: Any, write: VisitorWrite, ttl_seconds: int, plan: _Flush) -> None:
    key = write.key
    for test, assignment, overwrite in write.assignments:
        name = f"a:{test}"
        if overwrite:
            pipe.hset(key, name, assignment.encode())
        else:
            pipe.hsetnx(key, name, assignment.encode())
        plan.assignments.append((len(pipe.command_stack) - 1, write, test, assignment, overwrite))
    for marker, exposure in write.exposures:
        pipe.hsetnx(key, marker, b"1")
        plan.exposures.append((len(pipe.command_stack) - 1, write, exposure))
    if write.sets:
        pipe.hset(key, mapping=write.sets)
    if write.deletes:
        pipe.hdel(key, *write.deletes)
    for name, amount in write.incr.items():
        pipe.hincrby(key, name, amount)
    pipe.expire(key, ttl_seconds)


def experiment_viewed(write: VisitorWrite, exposure: Exposure) -> dict[str, Any]:
    """The exposure as a Segment track event, with a stable messageId (one per session)."""
    visitor = write.user_id or write.anonymous_id or ""
    seed = f"{visitor}|{write.session_id or ''}|{exposure.test}|{int(write.at // 86400)}"
    event: dict[str, Any] = {
        "type": "track",
        "event": EXPERIMENT_VIEWED,
        "messageId": "mb-exp-" + hashlib.blake2b(seed.encode(), digest_size=12).hexdigest(),
        "timestamp": datetime.fromtimestamp(write.at, UTC).isoformat().replace("+00:00", "Z"),
        "properties": {
            "experiment_key": exposure.test,
            "experiment_id": exposure.test,
            "experiment_name": exposure.test,
            "variant": exposure.variant,
            "variation_id": exposure.arm,
            "variation_name": exposure.variant,
            "arm": exposure.arm,
            "slot": exposure.slot,
            "session_id": write.session_id,
        },
    }
    if write.user_id:
        event["userId"] = write.user_id
    if write.anonymous_id:
        event["anonymousId"] = write.anonymous_id
    return event


# ---------------------------------------------------------------- counters and conversions


@dataclass(frozen=True, slots=True)
class TestCounts:
    test: str
    meta: TestMeta | None
    visitors: dict[int, int]
    sessions: dict[int, int]
    conversions: dict[int, int]
    guardrail: dict[str, Any] | None = None

    @property
    def empty(self) -> bool:
        return self.meta is None and not self.visitors and not self.conversions


async def read_counts(redis: Redis, keys: Keys, test: str) -> TestCounts:
    row: Any = await redis.hgetall(test_key(keys, test))
    by_kind: dict[str, dict[int, int]] = {"visitors": {}, "sessions": {}, "conversions": {}}
    for raw_name, raw_value in row.items():
        kind, _, arm = raw_name.decode().partition(":")
        if kind in by_kind and arm.isdigit():
            by_kind[kind][int(arm)] = int(raw_value)
    guardrail = row.get(b"guardrail")
    return TestCounts(
        test,
        TestMeta.decode(row.get(b"meta")),
        by_kind["visitors"],
        by_kind["sessions"],
        by_kind["conversions"],
        orjson.loads(guardrail) if guardrail else None,
    )


async def record_conversion(redis: Redis, keys: Keys, event: Mapping[str, Any]) -> None:
    """Attribute a track event to the arms of the tests whose goal it is (once per visitor).

    Called by the event pipeline's consumer for every track event; cheap when the event is
    no test's goal or the visitor has no assignment (one pipelined read).
    """
    if event.get("type") != "track" or not isinstance(event.get("event"), str):
        return
    user_id, anonymous_id = _id(event.get("userId")), _id(event.get("anonymousId"))
    names = state_keys(keys, user_id, anonymous_id)
    if not names:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hgetall(name)
        rows = await pipe.execute()
    found = decode_assignments(rows)
    open_tests = {test: a for test, (_, a, converted) in found.items() if not converted}
    updates = conversion_updates(event, open_tests)
    if not updates:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for update in updates:
            pipe.hsetnx(names[found[update.test][0]], f"c:{update.test}", b"1")
        firsts = await pipe.execute()
    async with redis.pipeline(transaction=False) as pipe:
        for update, first in zip(updates, firsts, strict=True):
            if first:
                pipe.hincrby(test_key(keys, update.test), f"conversions:{update.arm}", 1)
                kind = "rollout" if update.test.startswith("rollout:") else "experiment"
                metrics.CONVERSIONS.labels(kind=kind).inc()
        await pipe.execute()


def _id(value: Any) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    return value if isinstance(value, str) and value else None
