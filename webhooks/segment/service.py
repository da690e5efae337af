"""Segment webhook receiver: verify, parse, dedupe, hand over (the HTTP route is webhook_router.py).

Order of checks, each with its own answer: disabled (no secret) 404 → signature 401 → JSON and
message shape 400 → Engage audience flags 400 → dedupe (replay: 200, nothing changes) → hand
over: every message goes into the event pipeline (`pipeline.enqueue`), except Segment's user
deletion notice (`type: delete`), which erases the profile at once → store down: 503, so Segment
retries. The body is one Segment message or a JSON array of them (Actions batching). In an
array every event is judged on its own: a bad one is rejected by its index (listed in the
answer, `rejected`), the good ones are accepted; only when every event is bad is the answer 400
and nothing changes.

Messages are checked with the tracking API's own rules (`schemas.normalize`: known type, a
`userId` or `anonymousId`, a track's event name, 32 KB), so both entry points accept the same.

Dedupe is per event on `messageId`; an event without one gets `wh-<sha256 of its JSON>`. A
first `SET NX` claims the id for `claim_seconds`; once the effect is durable the id is remembered
for `dedupe_seconds`. A failed hand-over releases the claim, so Segment's retry is accepted.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.redis import Keys
from segment_sync.audiences.changes import audience_problem
from segment_sync.stream.pipeline import SEGMENT_WEBHOOK
from segment_sync.tracking.schemas import (
    Invalid,
    Received,
    Rejection,
    encode,
    message_id_of,
    normalize,
    received_now,
)
from segment_sync.webhook_config import SegmentWebhookSettings
from webhooks.exceptions import (
    InvalidPayload,
    WebhookDisabled,
    WebhookStoreUnavailable,
)
from webhooks.metrics import SEGMENT_WEBHOOK_EVENTS
from webhooks.verification import verify_segment_any

__all__ = [
    "SOURCE",
    "Enqueue",
    "Erase",
    "SegmentWebhook",
    "WebhookResult",
    "dedupe_key",
    "parse_events",
]

log = structlog.get_logger()

SOURCE = SEGMENT_WEBHOOK
DELETE = "delete"

Enqueue = Callable[[Redis, Keys, list[dict[str, Any]], str], Awaitable[list[str]]]
Erase = Callable[[str], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class WebhookResult:
    accepted: int
    duplicates: int
    rejected: tuple[Rejection, ...] = ()

    def body(self) -> dict[str, Any]:
        status = "duplicate" if self.duplicates and not self.accepted else "accepted"
        body: dict[str, Any] = {
            "status": status,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
        }
        if self.rejected:
            body["rejected"] = [r.as_json() for r in self.rejected]
        return body


def dedupe_key(keys: Keys, message_id: str) -> str:
    digest = hashlib.sha256(message_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return keys.segment_seen(digest)


class SegmentWebhook:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        settings: SegmentWebhookSettings,
        *,
        enqueue: Enqueue,
        erase: Erase,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._settings = settings
        self._secrets = settings.secrets
        self._enqueue = enqueue
        self._erase = erase

    @property
    def enabled(self) -> bool:
        return bool(self._secrets)

    async def receive(self, body: bytes, signature: str | None) -> WebhookResult:
        if not self._secrets:
            raise WebhookDisabled(
                "the Segment webhook is disabled: set SEGMENT_WEBHOOK_SECRETS to enable it"
            )
        self._verify(body, signature)
        events, rejected = parse_events(body)
        if rejected:
            SEGMENT_WEBHOOK_EVENTS.labels(outcome="rejected").inc(len(rejected))
            log.info("webhook.segment.rejected", events=[r.index for r in rejected][:20])
        fresh = await self._claim(events)
        if fresh:
            await self._hand_over(fresh)
        duplicates = len(events) - len(fresh)
        SEGMENT_WEBHOOK_EVENTS.labels(outcome="accepted").inc(len(fresh))
        SEGMENT_WEBHOOK_EVENTS.labels(outcome="duplicate").inc(duplicates)
        log.info(
            "webhook.segment.received",
            accepted=len(fresh),
            duplicates=duplicates,
            types=sorted({str(e.get("type")) for e in events}),
        )
        return WebhookResult(len(fresh), duplicates, tuple(rejected))

    def _verify(self, body: bytes, signature: str | None) -> None:
        verify_segment_any(
            secrets=self._secrets,
            body=body,
            signature=signature,
            accept_batch_first_event=self._settings.webhook_accept_batches,
        )

    async def _claim(self, events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The events not seen before, each now claimed; duplicates inside the body count once."""
        first: dict[str, dict[str, Any]] = {}
        for event in events:
            first.setdefault(event["messageId"], event)
        unique = list(first.values())
        ttl = self._settings.webhook_claim_seconds
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for event in unique:
                    name = dedupe_key(self._keys, event["messageId"])
                    pipe.set(name, b"pending", nx=True, ex=ttl)
                claimed = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc
        return [event for event, won in zip(unique, claimed, strict=True) if won]

    async def _hand_over(self, events: list[dict[str, Any]]) -> None:
        """Enqueue the messages, then erase for each deletion notice; keep what got done."""
        done: list[dict[str, Any]] = []
        messages = [e for e in events if e["type"] != DELETE]
        try:
            if messages:
                await self._enqueue(self._redis, self._keys, messages, SOURCE)
                done += messages
            for event in events:
                if event["type"] == DELETE:
                    await self._erase(str(event["userId"]))
                    SEGMENT_WEBHOOK_EVENTS.labels(outcome="erased").inc()
                    done.append(event)
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc
        finally:
            handed = {e["messageId"] for e in done}
            await self._settle(
                [e["messageId"] for e in done],
                [e["messageId"] for e in events if e["messageId"] not in handed],
            )

    async def _settle(self, done: list[str], failed: list[str]) -> None:
        """Remember what is durable for the dedupe window; release the claims of the rest."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for message_id in done:
                    name = dedupe_key(self._keys, message_id)
                    pipe.set(name, b"done", ex=self._settings.webhook_dedupe_seconds)
                if failed:
                    pipe.delete(*(dedupe_key(self._keys, m) for m in failed))
                await pipe.execute()
        except (RedisError, OSError) as exc:  # the claims expire on their own
            log.warning("webhook.segment.dedupe_not_settled", error=type(exc).__name__)


def _unavailable(exc: BaseException) -> WebhookStoreUnavailable:
    log.warning("webhook.segment.store_unavailable", error=type(exc).__name__, detail=str(exc))
    return WebhookStoreUnavailable("the event store is unavailable; retry later")


# --- parsing --------------------------------------------------------------------------------


def parse_events(
    body: bytes, *, now: float | None = None
) -> tuple[list[dict[str, Any]], list[Rejection]]:
    """The acceptable Segment messages of a webhook body (each with a `messageId`), and the
    events rejected on their own. A single event that is bad, or an array of only bad events,
    raises InvalidPayload (400): nothing of the request is usable."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidPayload(f"the body is not valid JSON: {exc}") from None
    received = received_now(time.time() if now is None else now)
    if isinstance(document, dict):
        try:
            return [_checked(document, received)], []
        except Invalid as exc:
            raise InvalidPayload(str(exc)) from None
    if not isinstance(document, list):
        raise InvalidPayload("the body must be a JSON object (or an array of objects)")
    if not document:
        raise InvalidPayload("the body is an empty JSON array")
    events, rejected = [], []
    for index, event in enumerate(document):
        try:
            events.append(_checked(event, received))
        except Invalid as exc:
            rejected.append(Rejection(index, message_id_of(event), str(exc)))
    if not events:
        first = rejected[0]
        raise InvalidPayload(
            f"all {len(rejected)} event(s) rejected; first: event {first.index}: {first.detail}"
        )
    return events, rejected


def _checked(event: Any, received: Received) -> dict[str, Any]:
    """The event with its messageId; raises Invalid with a readable reason."""
    if not isinstance(event, dict):
        raise Invalid("an event must be a JSON object")
    checked = _with_message_id(event)
    if checked.get("type") == DELETE:
        problem = _deletion_problem(checked)
    else:
        problem = _problem(checked, received)
    if problem is not None:
        raise Invalid(problem)
    return checked


def _with_message_id(event: dict[str, Any]) -> dict[str, Any]:
    message_id = event.get("messageId")
    if message_id is None or message_id == "":
        try:
            content = orjson.dumps(event, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError as exc:
            raise Invalid(f"event cannot be stored as JSON: {exc}") from None
        digest = hashlib.sha256(content).hexdigest()
        return {**event, "messageId": f"wh-{digest[:32]}"}
    if not isinstance(message_id, str):
        raise Invalid("messageId must be a string")
    return event


def _problem(event: dict[str, Any], received: Received) -> str | None:
    try:
        encode(normalize(event, received))
    except Invalid as exc:
        return str(exc)
    return audience_problem(event)


def _deletion_problem(event: dict[str, Any]) -> str | None:
    user = event.get("userId")
    if not isinstance(user, str | int) or isinstance(user, bool) or user == "":
        return "a delete needs a userId"
    return None
