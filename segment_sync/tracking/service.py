"""The tracking API's logic (authenticate, decode, check, append) and the pipeline's wiring.

`TrackingService.ingest` answers what the router returns; `run_worker` is `cli.py worker`
(the lifespan's start is `segment_sync/wiring.py`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import signal
import time
import zlib
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.errors import json_object
from core.redis import Keys, cluster_client, keys_for
from core.settings import StoreSettings
from segment_sync import metrics
from segment_sync.config import SegmentSettings
from segment_sync.exceptions import (
    InvalidMessage,
    InvalidPayload,
    MessagesRejected,
    PayloadTooLarge,
    TooManyMessages,
    TrackingDisabled,
    UnsupportedEncoding,
    WriteKeyInvalid,
)
from segment_sync.stream.consumer import EventConsumer, Hook
from segment_sync.stream.pipeline import TRACKING, TRACKING_SERVER, Outgoing, append, outgoing
from segment_sync.tracking.schemas import (
    MAX_BATCH_BYTES,
    MAX_BATCH_MESSAGES,
    Invalid,
    MessageTooLarge,
    Received,
    Rejection,
    message_id_of,
    normalize,
    received_now,
)

log = structlog.get_logger()

SOURCE = TRACKING


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int
    rejected: list[Rejection]

    def body(self) -> dict[str, Any]:
        if not self.rejected:
            return {"success": True}
        return {
            "success": True,
            "accepted": self.accepted,
            "rejected": [r.as_json() for r in self.rejected],
        }


class TrackingService:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        settings: SegmentSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._server_keys = tuple(k.encode() for k in settings.server_write_key_list)
        self._write_keys = (
            *(k.encode() for k in settings.write_key_list),
            *self._server_keys,
        )
        self._max_len = settings.stream_max_len
        self._ingest = settings.ingest()
        self.clock = clock

    @property
    def enabled(self) -> bool:
        return bool(self._write_keys)

    async def ingest(
        self,
        body: bytes,
        *,
        kind: str | None,
        encoding: str | None = None,
        authorization: str | None = None,
    ) -> IngestResult:
        """One request of the tracking API; `kind` None is `/v1/batch`."""
        if not self._write_keys:
            raise TrackingDisabled("the tracking API is disabled: set SEGMENT_WRITE_KEYS")
        from_header = _basic_user(authorization)
        if from_header is not None:
            self._check_key(from_header)
        document = _json(decompress(body, encoding))
        key = from_header
        if key is None:
            given = document.get("writeKey")
            key = given.encode() if isinstance(given, str) and given else None
            self._check_key(key)
        source = TRACKING_SERVER if key is not None and _among(key, self._server_keys) else SOURCE
        now = self.clock()
        rejected: list[Rejection] = []
        if kind is None:
            items, received = _batch(document, now)
            payloads, rejected = _checked(items, received)
        else:
            payloads = [_single(document, now, kind)]
        if rejected and not payloads:
            raise MessagesRejected(
                f"all {len(rejected)} message(s) rejected; first: {rejected[0].detail}",
                [r.as_json() for r in rejected],
            )
        await append(
            self._redis, self._keys, payloads, source, max_len=self._max_len, ingest=self._ingest
        )
        metrics.EVENTS_REJECTED.inc(len(rejected))
        return IngestResult(len(payloads), rejected)

    def _check_key(self, given: bytes | None) -> None:
        if given is None:
            raise WriteKeyInvalid("a write key is required: body writeKey or basic auth user")
        if not _among(given, self._write_keys):
            raise WriteKeyInvalid("the write key is not valid")


def _among(given: bytes, keys: Sequence[bytes]) -> bool:
    """Whether `given` is one of `keys`, comparing every key in constant time."""
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given, key)
    return matched


def _single(document: dict[str, Any], now: float, kind: str) -> Outgoing:
    try:
        received = received_now(now, sent_at=document.get("sentAt"))
        return outgoing(normalize(document, received, kind))
    except MessageTooLarge as exc:
        raise PayloadTooLarge(str(exc)) from None
    except Invalid as exc:
        raise InvalidMessage(str(exc)) from None


def _checked(items: Sequence[Any], received: Received) -> tuple[list[Outgoing], list[Rejection]]:
    payloads: list[Outgoing] = []
    rejected: list[Rejection] = []
    for index, raw in enumerate(items):
        try:
            payloads.append(outgoing(normalize(raw, received)))
        except Invalid as exc:
            rejected.append(Rejection(index, message_id_of(raw), str(exc)))
    return payloads, rejected


def _batch(document: dict[str, Any], now: float) -> tuple[list[Any], Received]:
    items = document.get("batch")
    if not isinstance(items, list):
        raise InvalidPayload("the body needs a 'batch' list of messages")
    if len(items) > MAX_BATCH_MESSAGES:
        raise TooManyMessages(
            f"a batch holds at most {MAX_BATCH_MESSAGES} messages, this one {len(items)}"
        )
    try:
        received = received_now(
            now,
            sent_at=document.get("sentAt"),
            context=document.get("context"),
            integrations=document.get("integrations"),
        )
    except Invalid as exc:
        raise InvalidPayload(f"the batch's sentAt: {exc}") from None
    return items, received


def _json(body: bytes) -> dict[str, Any]:
    return json_object(body, InvalidPayload)


def _basic_user(authorization: str | None) -> bytes | None:
    """The user name of `Authorization: Basic …` (Segment: the write key), else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise WriteKeyInvalid("the basic auth header is not valid base64") from None
    return decoded.partition(b":")[0] or None


def decompress(body: bytes, encoding: str | None, limit: int = MAX_BATCH_BYTES) -> bytes:
    """The body, gunzipped when `Content-Encoding: gzip`; never more than `limit` bytes out."""
    name = (encoding or "identity").strip().lower()
    if name == "identity":
        if len(body) > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes")
        return body
    if name not in ("gzip", "x-gzip"):
        raise UnsupportedEncoding(f"Content-Encoding {encoding!r} is not supported (use gzip)")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidPayload(f"the body is not valid gzip: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"request body exceeds {limit} bytes once decompressed")
    if not inflater.eof:
        raise InvalidPayload("the gzip body is truncated")
    return out


# ---------------------------------------------------------------- consumer hooks


class Refreshing:
    """A set loaded by `load` and loaded again once it is `every` seconds old (kept on a
    Redis error)."""

    def __init__(
        self, load: Callable[[], Awaitable[Collection[str]]], *, every: float = 1.0
    ) -> None:
        self._load = load
        self._every = every
        self._value: frozenset[str] = frozenset()
        self._due = 0.0

    async def get(self) -> frozenset[str]:
        if time.monotonic() >= self._due:
            self._due = time.monotonic() + self._every
            try:
                self._value = frozenset(await self._load())
            except (RedisError, OSError) as exc:
                log.warning("segment.consumer.hook_filter_stale", error=type(exc).__name__)
        return self._value


def only_events(hook: Hook, names: Refreshing) -> Hook:
    """`hook` for the track events whose name is in `names` (a cheap filter in front of a
    hook that reads Redis, such as experiment conversions: most events are no test's goal)."""

    async def filtered(event: Mapping[str, Any]) -> None:
        name = event.get("event")
        if event.get("type") == "track" and isinstance(name, str) and name in await names.get():
            await hook(event)

    return filtered


# ---------------------------------------------------------------- consumers


def consumer_client(url: str, store: StoreSettings, block_ms: int) -> Redis:
    """A client of its own for consumers: blocking reads need a longer socket timeout than the
    request path's, and a pool apart from it."""
    if store.cluster:
        timeout = block_ms / 1000 + max(store.socket_timeout, 1.0)
        # Per master: each shard's consumer applies up to 32 visitors at once, two slots each.
        return cluster_client(url, store, socket_timeout=timeout, max_connections=256)
    return Redis.from_url(
        url,
        socket_timeout=block_ms / 1000 + max(store.socket_timeout, 1.0),
        socket_connect_timeout=store.connect_timeout,
        max_connections=32,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )


async def run_worker(
    store: StoreSettings,
    settings: SegmentSettings,
    *,
    consumers: int = 1,
    hooks_factory: Callable[[Redis, Keys], Sequence[Hook]] | None = None,
) -> None:
    """`cli.py worker`: consumers only, until SIGTERM or SIGINT."""
    if store.url is None:
        raise ValueError("a worker needs REDIS_URL (the embedded store lives in one process)")
    keys = keys_for(store)
    client = consumer_client(store.url, store, settings.consumer_block_ms)
    hooks = hooks_factory(client, keys) if hooks_factory else ()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [
        asyncio.create_task(EventConsumer(client, keys, settings, hooks=hooks, shard=shard).run())
        for shard in range(settings.stream_shards)
        for _ in range(consumers)
    ]
    log.info("segment.worker.started", consumers=consumers)
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
        await client.aclose()
        log.info("segment.worker.stopped")
