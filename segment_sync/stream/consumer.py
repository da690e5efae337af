"""A consumer of the event stream, in the group `SEGMENT_CONSUMER_GROUP` (docs/events.md).

Loop: every `claim_interval_seconds`, reclaim entries idle for `claim_idle_ms` in any consumer's
pending list (`XAUTOCLAIM`: a dead worker's share) and trim; then read new entries
(`XREADGROUP … >`), apply them (apply.py) and `XACK` what took effect. An entry delivered more
than `max_deliveries` times without success goes to the dead-letter stream `<prefix>:events:dead`
and is acknowledged; an entry that is not a message at all goes there at once. Redis errors back
off and retry; nothing is acknowledged before its effect is committed, so a consumer killed at
any point loses nothing: another one (or its restart) reclaims the pending entries.

Several consumers (tasks, `cli.py worker` processes, replicas) share the stream. With
`SEGMENT_STREAM_SHARDS` = N each shard has its own consumer group and consumers (`shard`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import orjson
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from core.cancellation import reraise_if_cancelling
from core.redis import Keys
from segment_sync import metrics
from segment_sync.config import SegmentSettings
from segment_sync.profiles.store import RedisProfileStore
from segment_sync.stream.apply import (
    ApplyConflict,
    ApplyNotReplicated,
    BatchApplier,
    Entry,
    Outcome,
    entry,
)
from segment_sync.stream.pipeline import (
    MESSAGE_FIELD,
    SOURCE_FIELD,
    decode_entry,
    ensure_stream_group,
)

log = structlog.get_logger()

Hook = Callable[[Mapping[str, Any]], Awaitable[None]]
Raw = tuple[str, dict[bytes, bytes]]
_HOOK_CONCURRENCY = 8
_HOOK_ATTEMPTS = 3
_IDLE_CONSUMER_MS = 3600 * 1000


class EventConsumer:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        settings: SegmentSettings,
        *,
        name: str | None = None,
        hooks: Sequence[Hook] = (),
        shard: int = 0,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._stream = keys.events_shard(shard, settings.stream_shards)
        self._settings = settings
        self.name = name or settings.consumer_id()
        self._applier = BatchApplier(redis, keys, settings)
        self._store = RedisProfileStore(
            redis,
            keys,
            ttl_seconds=settings.profile_ttl_seconds,
            tombstone_seconds=settings.stream_max_age_seconds,
        )
        self._hooks = tuple(hooks)
        self._errors: dict[str, str] = {}
        self._next_housekeeping = 0.0
        self.handled = 0

    # ------------------------------------------------------------ the loop

    async def run(self) -> None:
        """Consume until cancelled; errors back off (0.1 s doubling to 5 s) and retry.

        A consumer never gives up: its budget is per failure streak, not per process, and a
        step that succeeds starts the next one with the short wait again.
        """
        log.info("segment.consumer.started", consumer=self.name)
        while True:
            if _cancelling():  # a cancellation redis-py swallowed (redis/redis-py#2028)
                raise asyncio.CancelledError
            await AsyncRetrying(
                retry=retry_if_exception(self._survivable),
                wait=wait_exponential(multiplier=0.1, max=5.0),
                before_sleep=self._note_failure,
                reraise=True,
            )(self.step)

    def _survivable(self, exc: BaseException) -> bool:
        """Every exception but a cancel: a bug must not stop the pipeline (its entries stay
        pending, are redelivered and end in the dead-letter stream; the rest goes on)."""
        if isinstance(exc, RedisError | OSError):
            reraise_if_cancelling(exc)  # redis-py can turn a cancellation into an error
        return isinstance(exc, Exception)

    async def _note_failure(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if exc is None:
            return
        metrics.CONSUMER_ERRORS.labels(error=type(exc).__name__).inc()
        if isinstance(exc, RedisError | OSError | ApplyConflict | ApplyNotReplicated):
            log.warning("segment.consumer.error", error=type(exc).__name__, detail=str(exc))
            if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                await self._ensure_group_quietly()
        else:
            log.error("segment.consumer.crashed", error=type(exc).__name__, exc_info=exc)

    async def step(self) -> int:
        """Housekeeping when due, then one read of new entries; how many were handled."""
        handled = 0
        if time.monotonic() >= self._next_housekeeping:
            await ensure_stream_group(self._redis, self._stream, self._settings.consumer_group)
            handled += await self.reclaim()
            await self.housekeeping()
            self._next_housekeeping = time.monotonic() + self._settings.claim_interval_seconds
        started = time.monotonic()
        block = self._settings.consumer_block_ms
        reply = await self._redis.xreadgroup(
            self._settings.consumer_group,
            self.name,
            {self._stream: ">"},
            count=self._settings.consumer_batch_size,
            block=block,
        )
        entries = _entries(reply)
        if not entries:
            if time.monotonic() - started < block / 2000:  # the embedded store does not block
                await asyncio.sleep(min(0.02, block / 1000))
            return handled
        return handled + await self.handle(entries)

    async def _ensure_group_quietly(self) -> None:
        try:
            await ensure_stream_group(self._redis, self._stream, self._settings.consumer_group)
        except (RedisError, OSError) as exc:
            log.warning("segment.consumer.group_not_created", error=type(exc).__name__)

    # ------------------------------------------------------------ handling

    async def handle(self, raw: Sequence[Raw]) -> int:
        """Apply entries, run the hooks, acknowledge what took effect."""
        started = time.perf_counter()
        good: list[Entry] = []
        broken: list[tuple[Raw, str]] = []
        for stream_id, fields in raw:
            try:
                message, source = decode_entry(fields)
            except (ValueError, orjson.JSONDecodeError) as exc:
                broken.append(((stream_id, fields), f"unreadable entry: {exc}"))
                continue
            good.append(entry(stream_id, message, source))
        if broken:
            await self._dead_letter(broken, deliveries=1)
        outcome = Outcome()
        for run in _runs(good):
            await self._apply(run, outcome)
        await self._run_hooks([e.message for e in (*outcome.applied, *outcome.duplicates)])
        if outcome.done:
            await self._redis.xack(self._stream, self._settings.consumer_group, *outcome.done)
        self._account(outcome, time.perf_counter() - started)
        return len(raw)

    async def _apply(self, run: list[Entry], outcome: Outcome) -> None:
        if len(run) == 1 and run[0].message.get("type") == "delete":
            user = run[0].message.get("userId")
            if isinstance(user, str) and user:
                await self._store.erase(user)
            outcome.applied.append(run[0])
            return
        result = await self._applier.apply(run)
        outcome.applied += result.applied
        outcome.duplicates += result.duplicates
        outcome.erased += result.erased
        outcome.failed.update(result.failed)
        outcome.untrusted += result.untrusted

    async def _run_hooks(self, messages: list[dict[str, Any]]) -> None:
        """Hooks (experiment conversions) see every message that took effect, usually once:
        a duplicate is shown again (hooks must be idempotent). A hook that keeps failing on
        Redis errors is logged and skipped; it never holds back the acknowledgement."""
        calls = [(hook, m) for m in messages for hook in self._hooks]
        failed = 0
        for start in range(0, len(calls), _HOOK_CONCURRENCY):
            chunk = calls[start : start + _HOOK_CONCURRENCY]
            results = await asyncio.gather(
                *(_hook_with_retries(hook, m) for hook, m in chunk), return_exceptions=True
            )
            for result in results:
                if isinstance(result, RedisError | OSError):
                    failed += 1
                elif isinstance(result, Exception):  # another package's bug: log, go on
                    log.error("segment.consumer.hook_error", error=repr(result))
        if failed:
            metrics.CONSUMER_ERRORS.labels(error="HookFailed").inc(failed)
            log.warning("segment.consumer.hook_failed", messages=failed)

    def _account(self, outcome: Outcome, seconds: float) -> None:
        now = time.time()
        for e in outcome.applied:
            metrics.EVENT_LAG.observe(max(0.0, now - e.accepted_ms / 1000))
        metrics.OUTCOMES["applied"].inc(len(outcome.applied))
        metrics.OUTCOMES["duplicate"].inc(len(outcome.duplicates))
        metrics.OUTCOMES["erased"].inc(len(outcome.erased))
        metrics.OUTCOMES["failed"].inc(len(outcome.failed))
        metrics.BATCH_SECONDS.observe(seconds)
        _report_untrusted(outcome.untrusted)
        self._errors.update(outcome.failed)
        for stream_id in outcome.done:
            self._errors.pop(stream_id, None)
        self.handled += len(outcome.done)

    # ------------------------------------------------------------ dead consumers, poison

    async def reclaim(self) -> int:
        """Take over entries idle too long in any consumer's pending list; dead-letter those
        delivered more than `max_deliveries` times."""
        settings, stream = self._settings, self._stream
        start, handled = "0-0", 0
        for _ in range(100):  # at most 100 pages a round; the rest waits for the next round
            if _cancelling():
                raise asyncio.CancelledError
            reply = await self._redis.xautoclaim(
                stream,
                settings.consumer_group,
                self.name,
                min_idle_time=settings.claim_idle_ms,
                start_id=start,
                count=settings.consumer_batch_size,
            )
            start = _text(reply[0])
            claimed = [(_text(i), f) for i, f in reply[1] if f is not None]
            if claimed:
                handled += await self._reclaimed(claimed)
            if start == "0-0":
                break
        return handled

    async def _reclaimed(self, claimed: list[Raw]) -> int:
        counts = await self._deliveries([stream_id for stream_id, _ in claimed])
        limit = self._settings.max_deliveries
        dead = [(r, self._errors.get(r[0], "")) for r in claimed if counts.get(r[0], 0) > limit]
        live = [r for r in claimed if counts.get(r[0], 0) <= limit]
        if dead:
            await self._dead_letter(dead, deliveries=None, counts=counts)
        log.info("segment.consumer.reclaimed", consumer=self.name, live=len(live), dead=len(dead))
        return len(dead) + (await self.handle(live) if live else 0)

    async def _deliveries(self, ids: list[str]) -> dict[str, int]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream_id in ids:
                pipe.xpending_range(
                    self._stream, self._settings.consumer_group, stream_id, stream_id, 1
                )
            replies = await pipe.execute()
        return {
            _text(row["message_id"]): int(row["times_delivered"])
            for rows in replies
            for row in rows
        }

    async def _dead_letter(
        self,
        dead: list[tuple[Raw, str]],
        *,
        deliveries: int | None,
        counts: Mapping[str, int] | None = None,
    ) -> None:
        settings, keys = self._settings, self._keys
        async with self._redis.pipeline(transaction=False) as pipe:
            for (stream_id, fields), error in dead:
                count = deliveries if deliveries is not None else (counts or {}).get(stream_id, 0)
                record: dict[Any, Any] = {
                    MESSAGE_FIELD: fields.get(MESSAGE_FIELD, b""),
                    SOURCE_FIELD: fields.get(SOURCE_FIELD, b""),
                    b"id": stream_id.encode(),
                    b"deliveries": str(count).encode(),
                    b"error": (error or f"not applied after {count} deliveries").encode()[:2000],
                    b"consumer": self.name.encode(),
                }
                pipe.xadd(
                    keys.events_dead, record, maxlen=settings.dead_letter_max_len, approximate=True
                )
            pipe.xack(self._stream, settings.consumer_group, *(r[0] for r, _ in dead))
            await pipe.execute()
        metrics.OUTCOMES["dead_lettered"].inc(len(dead))
        for (stream_id, _), error in dead:
            self._errors.pop(stream_id, None)
            log.error("segment.consumer.dead_lettered", entry=stream_id, error=error)

    # ------------------------------------------------------------ retention

    async def housekeeping(self) -> None:
        """Trim processed entries past their age, the dead letters past theirs; drop consumers
        that are long idle and own nothing; publish the pending count."""
        keys, settings = self._keys, self._settings
        now_ms = int(time.time() * 1000)
        groups = await self._redis.xinfo_groups(self._stream)
        floor = (now_ms - int(settings.stream_max_age_seconds * 1000), 0)
        for group in groups:
            floor = min(floor, _next_id(group["last-delivered-id"]))
            pending = await self._redis.xpending(self._stream, group["name"])
            if pending["pending"]:
                floor = min(floor, _parse_id(pending["min"]))
            if _text(group["name"]) == settings.consumer_group:
                metrics.PENDING.set(pending["pending"])
        await self._redis.xtrim(self._stream, minid=f"{floor[0]}-{floor[1]}", approximate=True)
        dead_floor = now_ms - int(settings.dead_letter_max_age_seconds * 1000)
        await self._redis.xtrim(keys.events_dead, minid=f"{dead_floor}-0", approximate=True)
        await self._forget_idle_consumers()

    async def _forget_idle_consumers(self) -> None:
        stream, group = self._stream, self._settings.consumer_group
        for consumer in await self._redis.xinfo_consumers(stream, group):
            name = _text(consumer["name"])
            if (
                name != self.name
                and not consumer["pending"]
                and consumer["idle"] > _IDLE_CONSUMER_MS
            ):
                await self._redis.xgroup_delconsumer(stream, group, name)


def _report_untrusted(entries: Sequence[Entry]) -> None:
    """Count and log (one line a batch) Engage data left out for coming from an untrusted
    source, such as `Audience Entered` posted with a browser's write key."""
    if not entries:
        return
    by_source: dict[str, int] = {}
    for e in entries:
        by_source[e.source] = by_source.get(e.source, 0) + 1
    for source, count in by_source.items():
        metrics.AUDIENCES_IGNORED.labels(source=source).inc(count)
    log.warning(
        "segment.audiences.untrusted_ignored",
        count=len(entries),
        sources=sorted(by_source),
        entries=[e.id for e in entries[:5]],
    )


async def _hook_with_retries(hook: Hook, message: Mapping[str, Any]) -> None:
    """One hook call; Redis errors retried (bounded, 0.1 s then 0.2 s) before giving up."""
    await AsyncRetrying(
        retry=retry_if_exception_type((RedisError, OSError)),
        stop=stop_after_attempt(_HOOK_ATTEMPTS),
        wait=wait_exponential(multiplier=0.1, max=1.0),
        reraise=True,
    )(hook, message)


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _runs(entries: list[Entry]) -> list[list[Entry]]:
    """Contiguous runs to apply together; a `delete` (erasure) message is a run of its own."""
    runs: list[list[Entry]] = []
    for e in entries:
        if e.message.get("type") == "delete":
            runs.append([e])
        elif runs and runs[-1][0].message.get("type") != "delete":
            runs[-1].append(e)
        else:
            runs.append([e])
    return runs


def _entries(reply: Any) -> list[Raw]:
    if not reply:
        return []
    return [(_text(i), f) for i, f in reply[0][1] if f is not None]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _parse_id(value: Any) -> tuple[int, int]:
    ms, _, seq = _text(value).partition("-")
    return int(ms), int(seq or 0)


def _next_id(value: Any) -> tuple[int, int]:
    ms, seq = _parse_id(value)
    return ms, seq + 1
