"""The producer side of the event stream: append normalized messages, one round trip a batch.

Every accepted message becomes one entry of the stream `<prefix>:events` with two fields:
`m`, the message as JSON in Segment's spec shape (schemas.normalize), and `src`, where it came
from (`tracking`, `segment-webhook`, ...). The entry is written before the caller answers, so
an acknowledged message is durable as far as Redis is (docs/events.md "Guarantees").

Retention: `XADD … MAXLEN ~ <SEGMENT_STREAM_MAX_LEN>` caps the stream; the consumer also trims
processed entries older than `SEGMENT_STREAM_MAX_AGE_SECONDS` (consumer.py).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from core.redis import Keys
from segment_sync import metrics
from segment_sync.exceptions import MessagesRejected
from segment_sync.schemas import (
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
TRUSTED_SOURCES = frozenset({TRACKING_SERVER, SEGMENT_WEBHOOK})
"""Sources whose Engage data (audiences, computed traits, personas) is applied: write keys are
public in browser snippets, so only Segment itself and the operator's servers may set them."""


async def append(
    redis: Redis,
    keys: Keys,
    payloads: Sequence[bytes],
    source: str,
    *,
    max_len: int | None = None,
) -> list[str]:
    """XADD each payload (already normalized and encoded), pipelined; the stream ids."""
    if not payloads:
        return []
    stream = keys.events_stream
    origin = source.encode()
    async with redis.pipeline(transaction=False) as pipe:
        for payload in payloads:
            pipe.xadd(
                stream,
                {MESSAGE_FIELD: payload, SOURCE_FIELD: origin},
                maxlen=max_len,
                approximate=True,
            )
        ids = await pipe.execute()
    metrics.EVENTS_ACCEPTED.labels(source=source).inc(len(ids))
    return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]


async def enqueue(
    redis: Redis,
    keys: Keys,
    events: list[dict[str, Any]],
    source: str,
    *,
    max_len: int | None = None,
) -> list[str]:
    """Append Segment messages from another entry point (the Segment webhook) to the stream.

    Each message is normalized as the tracking API does (messageId, receivedAt, timestamps);
    `delete` (Segment's user deletion) is accepted too and erases the user's profile when
    consumed. When any message is invalid nothing is appended and `MessagesRejected` (400)
    lists why.
    Returns the stream ids, in order. Redis errors propagate (the caller answers 503).
    """
    received = received_now(time.time())
    payloads, rejected = [], []
    for index, event in enumerate(events):
        try:
            payloads.append(encode(normalize(event, received, types=PIPELINE_TYPES)))
        except Invalid as exc:
            rejected.append(Rejection(index, message_id_of(event), str(exc)).as_json())
    if rejected:
        raise MessagesRejected(f"{len(rejected)} of {len(events)} event(s) invalid", rejected)
    return await append(redis, keys, payloads, source, max_len=max_len)


async def ensure_group(redis: Redis, keys: Keys, group: str) -> None:
    """Create the consumer group (from the stream's start: nothing appended before is lost)."""
    try:
        await redis.xgroup_create(keys.events_stream, group, id="0", mkstream=True)
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
