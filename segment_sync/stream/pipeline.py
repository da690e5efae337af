"""The producer side of the event stream: append normalized messages, one round trip a batch.

Every accepted message becomes one entry of the stream `<prefix>:events` with two fields:
`m`, the message as JSON in Segment's spec shape (schemas.normalize), and `src`, where it came
from (`tracking`, `segment-webhook`, ...). The entry is written before the caller answers, so
an acknowledged message is durable as far as Redis is (docs/events.md "Guarantees").

Retention: `XADD … MAXLEN ~ <SEGMENT_STREAM_MAX_LEN>` caps the stream; the consumer also trims
processed entries older than `SEGMENT_STREAM_MAX_AGE_SECONDS` (consumer.py).

Shards: with `SEGMENT_STREAM_SHARDS` = N > 1 the stream is N streams (`Keys.events_shard`), each
with its own consumer group, and a message goes to the shard of its visitor (`shard_of`: the
anonymousId, else the userId, noted when the message is encoded: `outgoing`), so one visitor's
messages keep their order and, on a Redis Cluster, ingest spreads over the masters. With
`SEGMENT_INGEST_WAIT_REPLICAS` = R > 0 the appends are followed by `WAIT R` on the same
connection (so on each shard's master): the caller answers only once R replicas hold them, or
fails with 503 (docs/operations.md).
"""

from __future__ import annotations

import functools
import time
import zlib
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from core.redis import Keys
from segment_sync import metrics
from segment_sync.config import Ingest
from segment_sync.exceptions import EventStoreUnavailable, MessagesRejected
from segment_sync.stream.transactions import failed, session
from segment_sync.tracking.schemas import (
    PIPELINE_TYPES,
    Invalid,
    Rejection,
    encode,
    message_id_of,
    normalize,
    received_now,
)

MESSAGE_FIELD = b"m"
SOURCE_FIELD = b"src"

TRACKING = "tracking"  # the tracking API, with a write key as browsers and apps hold them
TRACKING_SERVER = "tracking-server"  # the tracking API, with one of SEGMENT_SERVER_WRITE_KEYS
SEGMENT_WEBHOOK = "segment-webhook"  # the signed Segment webhook
ONE_STREAM = Ingest()  # one stream, no WAIT: the defaults
TRUSTED_SOURCES = frozenset({TRACKING_SERVER, SEGMENT_WEBHOOK})
"""Sources whose Engage data (audiences, computed traits, personas) is applied: write keys are
public in browser snippets, so only Segment itself and the operator's servers may set them."""


@functools.cache
def streams(keys: Keys, shards: int) -> tuple[str, ...]:
    """The names of the stream shards, shard 0 first (worked out once: on a cluster each
    shard's hash tag is searched for, and every append asks)."""
    return tuple(keys.events_shard(shard, shards) for shard in range(shards))


class Outgoing(NamedTuple):
    """A normalized message, encoded, with the key that picks its shard (`shard_of`)."""

    payload: bytes
    visitor: str


def outgoing(message: dict[str, Any]) -> Outgoing:
    """Encode a normalized message and note its visitor: the anonymousId, else the userId (else
    its messageId), so that the append never decodes the payload again to pick a shard."""
    visitor = message.get("anonymousId") or message.get("userId") or message.get("messageId")
    return Outgoing(encode(message), str(visitor or ""))


def shard_of(visitor: str, shards: int) -> int:
    """The shard of a visitor's messages (CRC-32, stable)."""
    return zlib.crc32(visitor.encode()) % shards if shards > 1 else 0


async def append(
    redis: Redis,
    keys: Keys,
    messages: Sequence[Outgoing],
    source: str,
    *,
    max_len: int | None = None,
    ingest: Ingest = ONE_STREAM,
) -> list[str]:
    """XADD each message (already normalized and encoded: `outgoing`) to its shard in one
    write per master, then `WAIT` when asked; the stream ids."""
    if not messages:
        return []
    shards = ingest.shards
    names = streams(keys, shards)
    origin = source.encode()
    cap = ("MAXLEN", "~", max_len) if max_len is not None else ()
    commands: list[Sequence[Any]] = [
        ("XADD", names[shard_of(key, shards)], *cap, "*", MESSAGE_FIELD, body, SOURCE_FIELD, origin)
        for body, key in messages
    ]
    if ingest.wait_replicas:
        commands.append(("WAIT", ingest.wait_replicas, ingest.wait_ms))
    async with session(redis) as tx:
        replies = await tx.roundtrip(commands)
    error = failed(replies)
    if error is not None:
        raise error
    if ingest.wait_replicas and int(replies[-1]) < ingest.wait_replicas:
        metrics.EVENTS_NOT_REPLICATED.inc(len(messages))
        raise EventStoreUnavailable(
            f"the events reached {int(replies[-1])} of {ingest.wait_replicas} replicas in "
            f"{ingest.wait_ms} ms; retry (messageIds make a retry safe)"
        )
    metrics.EVENTS_ACCEPTED.labels(source=source).inc(len(messages))
    return [_text(i) for i in replies[: len(messages)]]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def enqueue(
    redis: Redis,
    keys: Keys,
    events: list[dict[str, Any]],
    source: str,
    *,
    max_len: int | None = None,
    ingest: Ingest = ONE_STREAM,
) -> list[str]:
    """Append Segment messages from another entry point (the Segment webhook) to the stream.

    Each message is normalized as the tracking API does (messageId, receivedAt, timestamps);
    `delete` (Segment's user deletion) is accepted too and erases the user's profile when
    consumed. When any message is invalid nothing is appended and `MessagesRejected` (400)
    lists why.
    Returns the stream ids, in order. Redis errors propagate (the caller answers 503).
    """
    received = received_now(time.time())
    messages, rejected = [], []
    for index, event in enumerate(events):
        try:
            messages.append(outgoing(normalize(event, received, types=PIPELINE_TYPES)))
        except Invalid as exc:
            rejected.append(Rejection(index, message_id_of(event), str(exc)).as_json())
    if rejected:
        raise MessagesRejected(f"{len(rejected)} of {len(events)} event(s) invalid", rejected)
    return await append(redis, keys, messages, source, max_len=max_len, ingest=ingest)


async def ensure_group(redis: Redis, keys: Keys, group: str, *, shards: int = 1) -> None:
    """Create the consumer group on every shard (from the stream's start: nothing appended
    before is lost)."""
    for stream in streams(keys, shards):
        await ensure_stream_group(redis, stream, group)


async def ensure_stream_group(redis: Redis, stream: str, group: str) -> None:
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def decode_entry(fields: Mapping[bytes, bytes]) -> tuple[dict[str, Any], str]:
    """The message and source of one stream entry; raises ValueError when it is not ours."""
    raw = fields.get(MESSAGE_FIELD)
    if raw is None:
        raise ValueError("stream entry has no message field")
    message = orjson.loads(raw)
    if not isinstance(message, dict):
        raise ValueError("stream entry message is not an object")
    source = fields.get(SOURCE_FIELD, b"?").decode(errors="replace")
    return message, source
