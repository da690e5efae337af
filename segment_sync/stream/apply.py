"""Apply a batch of stream entries to profiles, each `messageId` exactly once.

One optimistic transaction per batch (a few round trips whatever its size):
1. the identity pointers of every id the batch names (plain pipelined read);
2. `WATCH` the profiles (and erasure tombstones), then read them, the `messageId`s they already
   applied (`ZMSCORE` on `<prefix>:{v:<id>}:seen`) and the tombstones, in one round trip;
3. derive everything in memory (identity.World, signals.apply_event), in stream order;
4. `MULTI` … `EXEC`: profiles, mirrors, applied ids. When a watched key changed meanwhile (another
   worker, an erasure), EXEC does nothing and the batch is computed again.

On a Redis Cluster a transaction stays inside one hash slot, and one visitor's keys share one
(`{v:<id>}`): the batch is split into visitors (entries linked by the ids they name), applied at
once a few at a time, each in its own transaction per slot (transactions.SpreadSession); an entry
naming two ids (a userId and an anonymousId) commits the linked id's mirror first and its
canonical profile with the applied `messageId`s last. The applied-id set of an id merged into
another stays where it is until it expires, instead of being moved (that is a cross-slot write).

The effect and the record of the `messageId` commit together, so a redelivered entry (after a
crash before XACK, a reclaim, a duplicate from a client retry) is recognised and only
acknowledged. An entry whose derivation raises is left out (the rest commits) and reported as
failed; the consumer leaves it pending for redelivery and, in the end, the dead-letter stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog
from redis.asyncio import Redis

from core import cluster as clusters
from core.redis import Keys
from core.resp import as_map
from segment_sync import metrics
from segment_sync.config import SegmentSettings
from segment_sync.exceptions import SegmentSyncError
from segment_sync.profiles.identity import World, message_ids
from segment_sync.profiles.signals import apply_event
from segment_sync.profiles.state import AUDIENCE_TIMES_FIELD, ProfileState, decode_row, encode_view
from segment_sync.stream.pipeline import TRUSTED_SOURCES
from segment_sync.stream.transactions import Session, failed, session
from segment_sync.tracking.schemas import Invalid, parse_timestamp

log = structlog.get_logger()

MAX_ATTEMPTS = 12
_YIELD_EVERY = 64  # entries derived between two yields to the event loop
_TRIM_SHARE = 1 / 8  # of the writes that also drop applied messageIds older than the window
_LOAD_ROUNDS = 3
_CLUSTER_CONCURRENCY = 32  # visitors applied at once on a cluster (two connections each, at most)
_VIEW_FIELDS = ("traits", "audiences", "signals", "live", "consent", "links", AUDIENCE_TIMES_FIELD)


class ApplyConflict(SegmentSyncError):
    """The batch kept conflicting with concurrent writers; its entries stay pending."""

    status_code = 503


class ApplyNotReplicated(SegmentSyncError):
    """The batch committed but fewer replicas than asked hold it; its entries stay pending."""

    status_code = 503


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    message: dict[str, Any]
    at: float  # the event's time, epoch seconds
    accepted_ms: int  # when it was appended (the stream id's time)
    source: str = ""
    trusted: bool = False  # may set audiences and personas (pipeline.TRUSTED_SOURCES)


def entry(stream_id: str, message: dict[str, Any], source: str = "") -> Entry:
    accepted_ms = int(stream_id.split("-", 1)[0])
    stamp = message.get("timestamp")
    at = accepted_ms / 1000
    if isinstance(stamp, str):
        with contextlib.suppress(Invalid):
            at = parse_timestamp(stamp)
    return Entry(stream_id, message, at, accepted_ms, source, source in TRUSTED_SOURCES)


@dataclass
class Outcome:
    applied: list[Entry] = field(default_factory=list)
    duplicates: list[Entry] = field(default_factory=list)
    erased: list[Entry] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # stream id → error
    untrusted: list[Entry] = field(default_factory=list)  # applied, minus their Engage data

    def add(self, other: Outcome) -> None:
        self.applied += other.applied
        self.duplicates += other.duplicates
        self.erased += other.erased
        self.failed.update(other.failed)
        self.untrusted += other.untrusted

    @property
    def done(self) -> list[str]:
        """Stream ids to acknowledge."""
        return [e.id for e in (*self.applied, *self.duplicates, *self.erased)]


@dataclass(frozen=True, slots=True)
class _Conflict:
    """EXEC found a watched key changed: these visitor ids had (empty: unknown which)."""

    changed: frozenset[str]
    resolution: Mapping[str, str]


@dataclass
class _Loaded:
    rows: dict[str, dict[bytes, bytes]]
    seen: dict[str, set[str]]  # visitor id → messageIds of this batch it already applied
    tombstones: dict[str, int]  # visitor id → erased at (ms)


@dataclass
class _Run:
    world: World
    outcome: Outcome
    targets: list[tuple[str, str]]  # (canonical at apply time, messageId)


class BatchApplier:
    def __init__(self, redis: Redis, keys: Keys, settings: SegmentSettings) -> None:
        self._redis = redis
        self._keys = keys
        self._rules = settings.rules()
        self._ttl = int(settings.profile_ttl_seconds)
        self._window = settings.dedupe_window_seconds
        self._max_links = settings.max_linked_ids
        self._cluster = clusters.cluster_of(redis) is not None
        # As ingest does: with SEGMENT_INGEST_WAIT_REPLICAS an entry is acknowledged only once
        # its effect reached the replicas, so a failover loses no applied event either.
        ingest = settings.ingest()
        self._wait = (
            [("WAIT", ingest.wait_replicas, ingest.wait_ms)] if ingest.wait_replicas else []
        )
        self._gate = asyncio.Semaphore(_CLUSTER_CONCURRENCY)

    async def apply(self, entries: Sequence[Entry]) -> Outcome:
        """Apply `entries`: as one transaction on a single node, one per visitor on a cluster."""
        if not self._cluster:
            return await self._apply(entries)
        outcome = Outcome()
        for result in await asyncio.gather(*(self._gated(v) for v in visitors(entries))):
            outcome.add(result)
        return outcome

    async def _gated(self, entries: Sequence[Entry]) -> Outcome:
        async with self._gate:
            return await self._apply(entries)

    async def _apply(self, entries: Sequence[Entry]) -> Outcome:
        """Apply `entries`; when another writer changed some of their profiles meanwhile, the
        entries of the other visitors commit at once and only those visitors' are derived again
        (so that concurrent consumers, which rarely share a visitor, rarely wait)."""
        outcome = Outcome()
        queue = [list(entries)]
        for attempt in range(MAX_ATTEMPTS):
            if not queue:
                return outcome
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # redis-py can swallow a cancellation
                raise asyncio.CancelledError
            group = queue.pop(0)
            async with session(self._redis) as tx:
                result = await self._attempt(tx, group)
            if isinstance(result, Outcome):
                outcome.add(result)
                continue
            metrics.APPLY_CONFLICTS.inc()
            clean, contested = _split(group, result)
            if clean and contested:
                queue[:0] = [clean, contested]
            else:
                queue.insert(0, group)
                await asyncio.sleep(random.uniform(0, min(0.002 * 2**attempt, 0.25)))
        if queue:
            raise ApplyConflict(f"{sum(map(len, queue))} entries kept conflicting; left pending")
        return outcome

    async def _attempt(self, tx: Session, entries: Sequence[Entry]) -> Outcome | _Conflict:
        ids = [message_ids(e.message) for e in entries]
        involved = sorted({v for names in ids for v in names})
        resolution = {v: v for v in involved}  # until a row says it points elsewhere
        for _ in range(_LOAD_ROUNDS):
            plan = _checks(entries, ids, resolution)
            loaded = await self._load(tx, involved, resolution, plan)
            resolved = {v: _resolve(loaded.rows, v) for v in involved}
            if resolved == resolution or (
                set(resolved.values()) <= loaded.rows.keys()
                and _checks(entries, ids, resolved) == plan
            ):
                break
            await tx.unwatch()  # linked ids: load their profiles (and what they applied)
            resolution = resolved
        else:
            return _Conflict(frozenset(), resolution)
        run = await self._compute(entries, ids, loaded)
        writes = [("MULTI",), *self._writes(run, loaded), ("EXEC",)]
        replies = await tx.roundtrip([*writes, *self._wait])
        executed = replies[len(writes) - 1]
        if executed is None:
            return _Conflict(await self._changed(tx, involved, loaded), resolved)
        error = failed(replies[: len(writes)]) or failed(executed)
        if error is not None:
            raise error
        if self._wait and int(replies[-1]) < self._wait[0][1]:
            raise ApplyNotReplicated(f"{replies[-1]} replicas acknowledged; left pending")
        return run.outcome

    async def _changed(self, tx: Session, involved: list[str], loaded: _Loaded) -> frozenset[str]:
        """The visitor ids whose profile (revision) or tombstone changed since `loaded`."""
        keys, names = self._keys, sorted(loaded.rows)
        commands: list[Sequence[Any]] = [("HMGET", keys.profile(c), "rev") for c in names]
        commands.append(("MGET", *(keys.profile_erased(v) for v in involved)))
        replies = await tx.roundtrip(commands)
        changed = {
            c
            for c, reply in zip(names, replies, strict=False)
            if (reply[0] if isinstance(reply, list) else None) != loaded.rows[c].get(b"rev")
        }
        stamps = replies[-1] if isinstance(replies[-1], list) else []
        for vid, stamp in zip(involved, stamps, strict=False):
            if (int(stamp) if stamp else None) != loaded.tombstones.get(vid):
                changed.add(vid)
        return frozenset(changed)

    async def _load(
        self,
        tx: Session,
        involved: list[str],
        resolution: Mapping[str, str],
        checks: Mapping[str, list[str]],
    ) -> _Loaded:
        """WATCH, then read profiles, applied messageIds and tombstones in one round trip."""
        keys = self._keys
        candidates = sorted(set(resolution) | set(resolution.values()))
        tombs = [keys.profile_erased(v) for v in involved]
        commands: list[Sequence[Any]] = [("WATCH", *(keys.profile(c) for c in candidates), *tombs)]
        commands += [("HGETALL", keys.profile(c)) for c in candidates]
        commands += [("ZMSCORE", keys.profile_seen(v), *mids) for v, mids in checks.items()]
        commands.append(("MGET", *tombs))
        replies = await tx.roundtrip(commands)
        error = failed(replies)
        if error is not None:
            raise error
        rows = {c: as_map(r) for c, r in zip(candidates, replies[1:], strict=False)}
        at = 1 + len(candidates)
        seen = {}
        for (vid, mids), scores in zip(checks.items(), replies[at:], strict=False):
            seen[vid] = {m for m, s in zip(mids, scores, strict=True) if s is not None}
        stamps = replies[-1]
        tombstones = {v: int(t) for v, t in zip(involved, stamps, strict=True) if t}
        return _Loaded(rows, seen, tombstones)

    def _world(self, rows: Mapping[str, dict[bytes, bytes]]) -> World:
        states: dict[str, ProfileState] = {v: decode_row(r) for v, r in rows.items() if r}
        return World(states, self._rules, self._max_links)

    async def _compute(
        self, entries: Sequence[Entry], ids: list[list[str]], loaded: _Loaded
    ) -> _Run:
        """Derive in stream order; an entry that raises is left out and the rest derived again."""
        failures: dict[int, str] = {}
        while True:
            run = _Run(self._world(loaded.rows), Outcome(), [])
            culprit = await self._derive(run, entries, ids, loaded, failures)
            if culprit is None:
                run.outcome.failed = {entries[i].id: error for i, error in failures.items()}
                return run
            failures[culprit[0]] = culprit[1]

    async def _derive(
        self,
        run: _Run,
        entries: Sequence[Entry],
        ids: list[list[str]],
        loaded: _Loaded,
        failures: Mapping[int, str],
    ) -> tuple[int, str] | None:
        applied: set[str] = set()
        for index, (e, names) in enumerate(zip(entries, ids, strict=True)):
            if index % _YIELD_EVERY == _YIELD_EVERY - 1:
                await asyncio.sleep(0)  # let requests of the same process run between entries
            if index in failures:
                continue
            if _erased(e, names, loaded.tombstones):
                run.outcome.erased.append(e)
                continue
            mid = e.message.get("messageId")
            if (
                mid in applied
                or any(mid in loaded.seen.get(v, ()) for v in names)
                or any(mid in loaded.seen.get(run.world.resolve(v), ()) for v in names)
            ):
                run.outcome.duplicates.append(e)
                continue
            try:
                target = run.world.target(e.message)
                state = run.world.state(target)
                if apply_event(state, e.message, e.at, self._rules, trusted=e.trusted):
                    run.outcome.untrusted.append(e)
            except Exception as exc:  # a poison message: isolate it, never block the batch
                log.warning("segment.consumer.derive_failed", entry=e.id, error=repr(exc))
                return index, f"{type(exc).__name__}: {exc}"
            run.world.dirty.add(target)
            applied.add(str(mid))
            run.targets.append((target, str(mid)))
            run.outcome.applied.append(e)
        return None

    def _writes(self, run: _Run, loaded: _Loaded) -> list[Sequence[Any]]:
        keys, ttl, world = self._keys, self._ttl, run.world
        now = time.time()
        rev = os.urandom(6).hex()  # every profile this commit writes gets a new revision
        commands: list[Sequence[Any]] = []
        for source, target in world.seen_moves:
            if source != target and not self._cluster:
                seen = keys.profile_seen(target)
                commands.append(
                    ("ZUNIONSTORE", seen, 2, seen, keys.profile_seen(source), "AGGREGATE", "MAX")
                )
                commands.append(("DEL", keys.profile_seen(source)))
        for vid in world.canonicals():
            had = loaded.rows.get(vid, {}).keys()
            commands += self._profile_writes(vid, world.state(vid), had, rev)
        for vid in world.detached:
            name = keys.profile(vid)
            commands.append(("HDEL", name, *_VIEW_FIELDS))
            commands.append(("HSET", name, "rev", rev))
            commands.append(("EXPIRE", name, ttl))
        by_canonical: dict[str, list[str]] = defaultdict(list)
        for target, mid in run.targets:
            by_canonical[world.resolve(target)].append(mid)
        for vid, mids in by_canonical.items():
            seen = keys.profile_seen(vid)
            commands.append(("ZADD", seen, *(x for mid in mids for x in (now, mid))))
            if random.random() < _TRIM_SHARE:  # trimming on every write would double its cost
                commands.append(("ZREMRANGEBYSCORE", seen, "-inf", now - self._window))
            commands.append(("EXPIRE", seen, ttl))
        return commands

    def _profile_writes(
        self, vid: str, state: ProfileState, had: Collection[bytes], rev: str
    ) -> list[Sequence[Any]]:
        keys, ttl = self._keys, self._ttl
        view = encode_view(state)
        flat = [x for pair in view.items() for x in pair]
        flat += ["rev", rev]
        absent = [] if state.consent is not None else ["consent"]
        name = keys.profile(vid)
        commands: list[Sequence[Any]] = []
        stale = [b"canonical", *([] if state.links else [b"links"]), *(a.encode() for a in absent)]
        if state.links:
            commands.append(("HSET", name, *flat, "links", _json_list(state.links)))
        else:
            commands.append(("HSET", name, *flat))
        if any(field in had for field in stale):
            commands.append(("HDEL", name, *stale))
        commands.append(("EXPIRE", name, ttl))
        for link in state.links:
            mirror = keys.profile(link)
            commands.append(("HSET", mirror, *flat, "canonical", vid))
            commands.append(("HDEL", mirror, "links", *absent))
            commands.append(("EXPIRE", mirror, ttl))
        return commands


def visitors(entries: Sequence[Entry]) -> list[list[Entry]]:
    """The entries grouped by visitor: entries naming a common id are one group, in stream
    order (links stored in profiles are resolved inside each group's transaction)."""
    named = [message_ids(e.message) or [f"~{e.id}"] for e in entries]
    links = _Links(named)
    groups: dict[str, list[Entry]] = {}
    for e, names in zip(entries, named, strict=True):
        groups.setdefault(links.root(names[0]), []).append(e)
    return list(groups.values())


class _Links:
    """Union-find over visitor ids: the ids one entry names together are one visitor."""

    def __init__(self, named: Iterable[Sequence[str]]) -> None:
        self.parent: dict[str, str] = {}
        for names in named:
            for other in names[1:]:
                self.parent[self.root(other)] = self.root(names[0])

    def root(self, v: str) -> str:
        """The representative of `v`'s set (`v` joins as its own set when unseen)."""
        parent = self.parent
        while parent.setdefault(v, v) != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v


def _erased(e: Entry, names: Sequence[str], tombstones: Mapping[str, int]) -> bool:
    """Whether an erasure of one of the ids came after the event was accepted, or after the
    event's own time: a client resending its offline queue (same messageIds, same
    timestamps) after the erasure must not bring the profile back."""
    since = min(e.accepted_ms, e.at * 1000)
    return any(tombstones.get(v, -1) >= since for v in names)


def _split(group: list[Entry], conflict: _Conflict) -> tuple[list[Entry], list[Entry]]:
    """Entries no changed profile touches (through an id, its profile, or another entry of the
    batch linking them), and the rest; both in stream order."""
    named = [
        [*ids, *(conflict.resolution.get(v, v) for v in ids)]
        for ids in (message_ids(e.message) for e in group)
    ]
    links = _Links(named)
    root = links.root
    contested = {root(v) for v in conflict.changed if v in links.parent}
    clean = [e for e, names in zip(group, named, strict=True) if root(names[0]) not in contested]
    rest = [e for e, names in zip(group, named, strict=True) if root(names[0]) in contested]
    return clean, rest


def _resolve(rows: Mapping[str, Mapping[bytes, bytes]], vid: str) -> str:
    """The canonical id of `vid` by the `canonical` pointers of the rows read (as World does)."""
    for _ in range(8):
        pointer = rows.get(vid, {}).get(b"canonical")
        if not pointer:
            return vid
        vid = pointer.decode()
    return vid


def _checks(
    entries: Sequence[Entry], ids: list[list[str]], resolution: Mapping[str, str]
) -> dict[str, list[str]]:
    """Per visitor id, the messageIds to look up in its applied set: every message is checked
    against each id it names and the profiles those ids resolve to."""
    checks: dict[str, list[str]] = defaultdict(list)
    for e, names in zip(entries, ids, strict=True):
        mid = e.message.get("messageId")
        if isinstance(mid, str):
            for vid in sorted({*names, *(resolution[v] for v in names)}):
                checks[vid].append(mid)
    return dict(checks)


def _json_list(values: list[str]) -> bytes:
    return orjson.dumps(values)
