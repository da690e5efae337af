"""Background pulls from Segment's Profile API for identified visitors we know nothing about.

`/v1/assemble` never waits for Segment: when the profile read finds nothing for a `user.id`,
`ProfileBreaker.on_miss` calls `ProfilePuller.on_miss`, which only schedules a task and returns.
The task pulls traits and audiences (profile_api.py) and writes them into the visitor's profile,
so a later assemble sees them.

Not hammering Segment:
- one pull per user at a time in this process (in-flight map) and across replicas (the marker
  key `<p>:{v:u:<userId>}:profile_pull`, claimed with `SET NX`);
- the marker then stays for `profile_cache_seconds` after a pull that found a profile, and for
  `profile_negative_cache_seconds` after a 404 or a failed pull; a small in-process memory of the
  same outcomes spares the Redis round trip for repeated misses;
- at most `profile_concurrency` pulls run at once, and misses beyond `profile_max_pending`
  waiting pulls are dropped (counted as `microbridge_segment_profile_pulls_total`, outcome
  `dropped`).

An erased user (`DELETE /v1/profiles/{userId}` or Segment's deletion notice) is not pulled back
while the erasure tombstone (`<p>:{v:u:<userId>}:erased`) lives.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Literal, Protocol

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.redis import Keys, user_visitor
from segment_sync.metrics import PROFILE_PULLS
from segment_sync.profile_api.client import ProfileApiClient, ProfileApiError, PulledProfile
from segment_sync.profiles.profile import Profile
from segment_sync.webhook_config import SegmentWebhookSettings

__all__ = ["ProfilePuller", "ProfileWriter", "PullOutcome", "pull_marker_key"]

log = structlog.get_logger()

PullOutcome = Literal["written", "absent", "failed", "cached", "erased", "store_unavailable"]

_MEMORY_SIZE = 10_000


class ProfileWriter(Protocol):
    async def read(self, user_id: str | None, anonymous_id: str | None) -> Profile | None: ...

    async def write(
        self,
        *,
        user_id: str | None = None,
        anonymous_id: str | None = None,
        traits: Mapping[str, Any] | None = None,
        audiences: set[str] | frozenset[str] | None = None,
        confirmed: Mapping[str, float] | None = None,
    ) -> None: ...


def pull_marker_key(keys: Keys, user_id: str) -> str:
    """The marker of a user's pull: claimed with `SET NX`, then holds the outcome."""
    return keys.profile_pull(user_visitor(user_id))


class ProfilePuller:
    def __init__(
        self,
        client: ProfileApiClient,
        profiles: ProfileWriter,
        redis: Redis,
        keys: Keys,
        settings: SegmentWebhookSettings,
    ) -> None:
        self._client = client
        self._profiles = profiles
        self._redis = redis
        self._keys = keys
        self._settings = settings
        self._semaphore = asyncio.Semaphore(settings.profile_concurrency)
        self._inflight: dict[str, asyncio.Task[PullOutcome]] = {}
        self._recent: OrderedDict[str, float] = OrderedDict()  # user id → monotonic expiry
        self._claim_seconds = _claim_seconds(settings)

    def on_miss(self, user_id: str) -> None:
        """Schedule a pull of `user_id` unless one runs or ran lately; never blocks."""
        if user_id in self._inflight or self._remembered(user_id):
            return
        if len(self._inflight) >= self._settings.profile_max_pending:
            PROFILE_PULLS.labels(outcome="dropped").inc()
            return
        task = asyncio.get_running_loop().create_task(self._run(user_id), name="profile-pull")
        self._inflight[user_id] = task
        task.add_done_callback(lambda _: self._inflight.pop(user_id, None))

    @property
    def busy(self) -> bool:
        """Whether a pull is scheduled or running in this process."""
        return bool(self._inflight)

    async def wait_idle(self) -> None:
        """Until no pull is in flight (tests and shutdown)."""
        while self._inflight:
            await asyncio.wait(list(self._inflight.values()))

    async def aclose(self) -> None:
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)

    async def _run(self, user_id: str) -> PullOutcome:
        async with self._semaphore:
            outcome = await self.pull(user_id)
        PROFILE_PULLS.labels(outcome=outcome).inc()
        return outcome

    async def pull(self, user_id: str) -> PullOutcome:
        """One pull: claim the marker, fetch, write; the outcome says what happened."""
        marker = pull_marker_key(self._keys, user_id)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.exists(self._keys.profile_erased(user_visitor(user_id)))
                pipe.set(marker, b"pulling", nx=True, ex=self._claim_seconds)
                erased, claimed = await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("segment.profile_pull.store_unavailable", error=type(exc).__name__)
            return "store_unavailable"
        if erased:  # DELETE /v1/profiles or Segment's deletion notice: do not pull it back
            if claimed:
                await self._release(marker)
            self._remember(user_id, self._settings.profile_negative_cache_seconds)
            return "erased"
        if not claimed:
            self._remember(user_id, self._settings.profile_negative_cache_seconds)
            return "cached"
        try:
            pulled = await self._client.fetch(user_id)
        except ProfileApiError as exc:
            log.error("segment.profile_pull.failed", error=exc.name, detail=exc.detail)
            return await self._finish(marker, user_id, "failed")
        if pulled is None:
            log.info("segment.profile_pull.absent")
            return await self._finish(marker, user_id, "absent")
        try:
            await self._write(user_id, pulled)
        except (RedisError, OSError) as exc:
            log.warning("segment.profile_pull.store_unavailable", error=type(exc).__name__)
            await self._release(marker)
            return "store_unavailable"
        log.info(
            "segment.profile_pull.written",
            traits=len(pulled.traits),
            audiences=len(pulled.audiences),
        )
        return await self._finish(marker, user_id, "written")

    async def _write(self, user_id: str, pulled: PulledProfile) -> None:
        """Pulled data under what arrived meanwhile (webhook, tracking): the newer wins."""
        current = await self._profiles.read(user_id, None)
        traits: Mapping[str, Any] = pulled.traits
        audiences = pulled.audiences
        if current is not None:
            traits = {**pulled.traits, **current.traits}
            audiences = audiences | current.audiences
        confirmed = dict.fromkeys(pulled.audiences, time.time())  # freshness (maxAgeSeconds)
        await self._profiles.write(
            user_id=user_id, traits=traits, audiences=audiences, confirmed=confirmed
        )

    async def _finish(self, marker: str, user_id: str, outcome: PullOutcome) -> PullOutcome:
        seconds = (
            self._settings.profile_cache_seconds
            if outcome == "written"
            else self._settings.profile_negative_cache_seconds
        )
        self._remember(user_id, seconds)
        try:
            await self._redis.set(marker, outcome.encode(), ex=seconds)
        except (RedisError, OSError) as exc:  # the claim still expires on its own
            log.warning("segment.profile_pull.marker_not_set", error=type(exc).__name__)
        return outcome

    async def _release(self, marker: str) -> None:
        try:
            await self._redis.delete(marker)
        except (RedisError, OSError) as exc:
            log.warning("segment.profile_pull.marker_not_released", error=type(exc).__name__)

    def _remembered(self, user_id: str) -> bool:
        expiry = self._recent.get(user_id)
        if expiry is None:
            return False
        if expiry <= time.monotonic():
            del self._recent[user_id]
            return False
        return True

    def _remember(self, user_id: str, seconds: float) -> None:
        self._recent[user_id] = time.monotonic() + seconds
        self._recent.move_to_end(user_id)
        while len(self._recent) > _MEMORY_SIZE:
            self._recent.popitem(last=False)


def _claim_seconds(settings: SegmentWebhookSettings) -> int:
    """Long enough for every attempt of both reads, so two replicas never pull at once."""
    per_attempt = settings.profile_timeout_seconds + settings.profile_max_wait_seconds
    return max(60, int(2 * settings.profile_max_attempts * per_attempt) + 1)
