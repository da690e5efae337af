"""Decision state in Redis: the hot-path read, the batched writes, test counters, conversions.

The hot path reads a visitor's profile and decision state in ONE pipelined round trip
(`DecisionStateStore.read`). Writes caused by page views are applied off the request path, in
batches (`apply_writes`, driven by `assembly.writer.DecisionWriter`). Per test (an experiment key
or `rollout:<variant>`) one hash `<p>:decisions:test:<test>` counts, per arm, by the arm's
label (its variant key; `control` or `holdout` for the baseline): `arm:<label>:visitors` (first
assignment), `arm:<label>:sessions` (exposures, once per visitor and session),
`arm:<label>:conversions` (visitors who converted, once each); `meta` holds the arms and weights;
`<p>:decisions:tests` is the set of tests that have data. Counters keyed by an arm's position
(`visitors:<n>`, before arms kept their identity) are moved to their label by the `meta` they
were written under (`MIGRATE_POSITIONAL`) before a new `meta` replaces it, and read the same way
until then.
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
from redis.exceptions import ResponseError

from assembly import metrics
from assembly.decisions.state import (
    Assignment,
    DecisionState,
    Exposure,
    PendingWrites,
    TestMeta,
    VisitorWrite,
    decode_assignments,
    session_tag,
)
from assembly.experiments.assignment import conversion_updates
from assembly.ports import Profile
from core.redis import Keys, anonymous_visitor, user_visitor
from core.roundtrip import OneRoundTrip, RawCommands

log = structlog.get_logger()

EXPERIMENT_VIEWED = "Experiment Viewed"
COUNTS = ("visitors", "sessions", "conversions")

# Positional counters (`visitors:<n>`) → `arm:<label>:visitors` by the arms of the stored meta.
MIGRATE_POSITIONAL = """
local meta = redis.call('HGET', KEYS[1], 'meta')
if not meta then return 0 end
local ok, doc = pcall(cjson.decode, meta)
if not ok or type(doc) ~= 'table' or type(doc['arms']) ~= 'table' then return 0 end
local row = redis.call('HGETALL', KEYS[1])
local moved = 0
for i = 1, #row, 2 do
  local kind, n = string.match(row[i], '^(%l+):(%d+)$')
  if kind == 'visitors' or kind == 'sessions' or kind == 'conversions' then
    local label = doc['arms'][tonumber(n) + 1]
    if type(label) == 'string' then
      redis.call('HINCRBY', KEYS[1], 'arm:' .. label .. ':' .. kind, row[i + 1])
      redis.call('HDEL', KEYS[1], row[i])
      moved = moved + 1
    end
  end
end
return moved
"""


def count_field(label: str, kind: str) -> str:
    """A test counter's field: `arm:<label>:<kind>` (kind: visitors, sessions, conversions)."""
    return f"arm:{label}:{kind}"


def state_keys(keys: Keys, user_id: str | None, anonymous_id: str | None) -> list[str]:
    """The visitor's decision-state hashes, the one that writes go to first."""
    names = []
    if user_id:
        names.append(keys.decisions(user_visitor(user_id)))
    if anonymous_id:
        names.append(keys.decisions(anonymous_visitor(anonymous_id)))
    return names


class PipelinedProfiles(Protocol):
    """The profile store's half of the shared read (`segment_sync.profiles.store`)."""

    def queue_read(self, pipe: Any, user_id: str | None, anonymous_id: str | None) -> int: ...

    def decode_rows(
        self, replies: Sequence[Any], user_id: str | None, anonymous_id: str | None
    ) -> Profile | None: ...


class DecisionStateStore:
    """Profile and decision state of a visitor in one pipelined read (DESIGN.md §3).

    The reads go out as one command (`core.roundtrip`): the client CPU of a round trip is
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
    fresh = _fresh_metas(plan, results, metas)
    for test in fresh:  # positional counters move while the meta they were written under holds
        await migrate_counters(redis, keys, test)
    events: list[dict[str, Any]] = []
    async with redis.pipeline(transaction=False) as pipe:
        for index, _, test, assignment, overwrite in plan.assignments:
            if overwrite or results[index]:
                pipe.hincrby(keys.test_counts(test), count_field(assignment.variant, "visitors"), 1)
        for index, write, exposure in plan.exposures:
            if not results[index]:
                continue
            pipe.hincrby(
                keys.test_counts(exposure.test), count_field(exposure.variant, "sessions"), 1
            )
            metrics.EXPOSURES.labels(kind=exposure.meta.kind).inc()
            if exposure.meta.kind == "experiment":
                events.append(experiment_viewed(write, exposure))
        for test, meta in fresh.items():
            pipe.hset(keys.test_counts(test), "meta", meta)
            pipe.sadd(keys.tests_index, test)
        await pipe.execute()
    metas.update(fresh)
    return events


def _fresh_metas(plan: _Flush, results: list[Any], metas: dict[str, bytes]) -> dict[str, bytes]:
    """The test metadata of this batch's exposures that this process has not written yet."""
    fresh: dict[str, bytes] = {}
    for index, _, exposure in plan.exposures:
        if results[index]:
            meta = exposure.meta.encode()
            if metas.get(exposure.test) != meta:
                fresh[exposure.test] = meta
    return fresh


async def migrate_counters(redis: Redis, keys: Keys, test: str) -> int:
    """Move a test's positional counters to their arm labels (by its stored meta); how many.

    A store without scripting keeps them: they are still read by the stored meta (`read_counts`).
    """
    try:
        moved: Any = await redis.eval(MIGRATE_POSITIONAL, 1, keys.test_counts(test))
    except ResponseError as exc:
        log.warning("assembly.counters.migration_failed", test=test, error=str(exc))
        return 0
    if moved:
        log.info("assembly.counters.migrated", test=test, fields=int(moved))
    return int(moved)


def _queue_visitor(pipe: Any, write: VisitorWrite, ttl_seconds: int, plan: _Flush) -> None:
    key = write.key
    for test, assignment, overwrite in write.assignments:
        name = f"a:{test}"
        if overwrite:
            pipe.hset(key, name, assignment.encode())
        else:
            pipe.hsetnx(key, name, assignment.encode())
        plan.assignments.append((len(pipe) - 1, write, test, assignment, overwrite))
    for marker, exposure in write.exposures:
        pipe.hsetnx(key, marker, b"1")
        plan.exposures.append((len(pipe) - 1, write, exposure))
    if write.sets:
        pipe.hset(key, mapping=write.sets)
    if write.deletes:
        pipe.hdel(key, *write.deletes)
    for name, amount in write.incr.items():
        pipe.hincrby(key, name, amount)
    ttl = write.ttl or ttl_seconds
    pipe.expire(key, ttl, nx=True)  # a new hash gets its lifetime...
    pipe.expire(key, ttl, gt=True)  # ...an older one only ever a longer one (Redis >= 7.0)


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
    """A test's counters by arm label (variant key, `control`, `holdout`)."""

    test: str
    meta: TestMeta | None
    visitors: dict[str, int]
    sessions: dict[str, int]
    conversions: dict[str, int]
    guardrail: dict[str, Any] | None = None

    @property
    def empty(self) -> bool:
        return self.meta is None and not self.visitors and not self.conversions

    @property
    def labels(self) -> list[str]:
        """Every arm label with data, in first-seen order."""
        return list(dict.fromkeys([*self.visitors, *self.sessions, *self.conversions]))


async def read_counts(redis: Redis, keys: Keys, test: str) -> TestCounts:
    row: Any = await redis.hgetall(keys.test_counts(test))
    meta = TestMeta.decode(row.get(b"meta"))
    by_kind: dict[str, dict[str, int]] = {kind: {} for kind in COUNTS}
    for raw_name, raw_value in row.items():
        found = _counter(raw_name.decode(), meta)
        if found is not None:
            kind, label = found
            by_kind[kind][label] = by_kind[kind].get(label, 0) + int(raw_value)
    guardrail = row.get(b"guardrail")
    return TestCounts(
        test,
        meta,
        by_kind["visitors"],
        by_kind["sessions"],
        by_kind["conversions"],
        orjson.loads(guardrail) if guardrail else None,
    )


def _counter(name: str, meta: TestMeta | None) -> tuple[str, str] | None:
    """(kind, label) of a counter field; a positional one is read by the stored meta's arms."""
    if name.startswith("arm:"):
        label, _, kind = name[4:].rpartition(":")
        return (kind, label) if kind in COUNTS and label else None
    kind, _, arm = name.partition(":")
    if kind in COUNTS and arm.isdigit() and meta is not None and int(arm) < len(meta.arms):
        return kind, meta.arms[int(arm)]
    return None


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
                field_name = count_field(update.variant, "conversions")
                pipe.hincrby(keys.test_counts(update.test), field_name, 1)
                kind = "rollout" if update.test.startswith("rollout:") else "experiment"
                metrics.CONVERSIONS.labels(kind=kind).inc()
        await pipe.execute()


def _id(value: Any) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    return value if isinstance(value, str) and value else None
