"""The tracking API's wire: Segment's HTTP API messages, checked and normalized.

Validation is hand-written (per message, a few dict lookups): ingest runs at tens of thousands
of messages a second. The pydantic models at the end document the shapes for OpenAPI only.

A normalized message keeps every field the client sent (minus `writeKey`) and gains Segment's
server-side fields: `messageId` (generated when missing), `receivedAt`, `originalTimestamp` (as
sent), and `timestamp` corrected for the client's clock with `sentAt`, as Segment does:
`timestamp = receivedAt - (sentAt - originalTimestamp)`. Timestamps come out as
`2012-12-02T00:30:12.984Z`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from segment_sync.profiles.state import iso

MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_MESSAGES = 2500
MAX_ID_LENGTH = 256
TYPES = frozenset({"identify", "track", "page", "screen", "group", "alias"})
PIPELINE_TYPES = TYPES | {"delete"}
_OBJECT_FIELDS = ("properties", "traits", "context", "integrations")
_LENIENT = re.compile(
    r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ](\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:[.,](\d+))?)?)?"
    r"\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?\s*$"
)


class Invalid(ValueError):
    """One message is not acceptable; the text is the detail the client sees."""


class MessageTooLarge(Invalid):
    """Over the 32 KB a message may have."""


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    message_id: str | None
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {"index": self.index, "messageId": self.message_id, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Received:
    """What is common to every message of one request."""

    at: float  # epoch seconds
    at_iso: str
    sent_at: float | None = None
    context: Mapping[str, Any] | None = None
    integrations: Mapping[str, Any] | None = None


def received_now(
    now: float,
    *,
    sent_at: Any = None,
    context: Any = None,
    integrations: Any = None,
) -> Received:
    sent = parse_timestamp(sent_at) if isinstance(sent_at, str) else None
    return Received(
        at=now,
        at_iso=iso(now),
        sent_at=sent,
        context=context if isinstance(context, dict) and context else None,
        integrations=integrations if isinstance(integrations, dict) and integrations else None,
    )


# ---------------------------------------------------------------- timestamps


def parse_timestamp(value: str) -> float:
    """Epoch seconds of an ISO-8601 date-time; lenient about `2015-2-02T00:30:08.276Z`.

    No offset means UTC. Raises Invalid.
    """
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        moment = _lenient(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.timestamp()
    except (OverflowError, OSError, ValueError):
        raise Invalid(f"timestamp {value[:40]!r} is out of range") from None


def _lenient(value: str) -> datetime:
    match = _LENIENT.match(value)
    if match is None:
        raise Invalid(f"timestamp {value[:40]!r} is not an ISO-8601 date-time")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=_zone(offset),
        )
    except ValueError:
        raise Invalid(f"timestamp {value[:40]!r} is not a valid date-time") from None


def _zone(offset: str | None) -> timezone:
    if offset is None or offset in ("Z", "z"):
        return UTC
    sign = -1 if offset[0] == "-" else 1
    digits = offset[1:].replace(":", "")
    minutes = int(digits[:2]) * 60 + (int(digits[2:4]) if len(digits) > 2 else 0)
    return timezone(sign * timedelta(minutes=minutes))


# ---------------------------------------------------------------- messages


def normalize(
    raw: Any, received: Received, kind: str | None = None, *, types: frozenset[str] = TYPES
) -> dict[str, Any]:
    """One message, checked and with Segment's server-side fields; raises Invalid.

    `kind` is the type the endpoint implies (`/v1/track` → track); None for batch items.
    `types` are the accepted types (the webhook also hands over `delete`, an erasure request).
    """
    if not isinstance(raw, dict):
        raise Invalid("a message must be a JSON object")
    message = dict(raw)
    message.pop("writeKey", None)
    if kind is not None:
        message["type"] = kind
    kind = message.get("type")
    if not isinstance(kind, str) or kind not in types:
        shown = repr(kind)[:40]
        raise Invalid(f"type {shown} is not one of {', '.join(sorted(types))}")
    user = message["userId"] = _id(message.get("userId"), "userId")
    anonymous = message["anonymousId"] = _id(message.get("anonymousId"), "anonymousId")
    if kind in ("alias", "delete") and user is None:
        raise Invalid(f"{kind} needs a userId")
    if kind == "alias":
        message["previousId"] = _required_id(message.get("previousId"), "previousId")
    elif user is None and anonymous is None:
        raise Invalid("a message needs a userId or an anonymousId")
    if kind == "track":
        event = message.get("event")
        if not isinstance(event, str) or not event.strip():
            raise Invalid("a track needs an event name")
    elif kind == "group":
        message["groupId"] = _required_id(message.get("groupId"), "groupId")
    _objects(message, received)
    _message_id(message)
    _timestamps(message, received)
    return message


def _id(value: Any, name: str) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise Invalid(f"{name} must be a string")
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_ID_LENGTH:
        raise Invalid(f"{name} is longer than {MAX_ID_LENGTH} characters")
    return text


def _required_id(value: Any, name: str) -> str:
    found = _id(value, name)
    if found is None:
        raise Invalid(f"{name} is required")
    return found


def _objects(message: dict[str, Any], received: Received) -> None:
    for name in _OBJECT_FIELDS:
        value = message.get(name)
        if value is None:
            message.pop(name, None)
        elif not isinstance(value, dict):
            raise Invalid(f"{name} must be an object")
    if received.context is not None:
        message["context"] = {**received.context, **message.get("context", {})}
    if received.integrations is not None:
        message["integrations"] = {**received.integrations, **message.get("integrations", {})}


def _message_id(message: dict[str, Any]) -> None:
    value = message.get("messageId")
    if value is None or value == "":
        message["messageId"] = f"mb-{uuid.uuid4()}"
    elif not isinstance(value, str):
        raise Invalid("messageId must be a string")
    elif len(value) > MAX_ID_LENGTH:
        raise Invalid(f"messageId is longer than {MAX_ID_LENGTH} characters")


def _timestamps(message: dict[str, Any], received: Received) -> None:
    message["receivedAt"] = received.at_iso
    value = message.get("timestamp")
    if value is None:
        message["timestamp"] = received.at_iso
        return
    if not isinstance(value, str):
        raise Invalid("timestamp must be an ISO-8601 string")
    at = parse_timestamp(value)
    sent = message.get("sentAt")
    sent_at = parse_timestamp(sent) if isinstance(sent, str) else received.sent_at
    if sent_at is not None:
        at = received.at - (sent_at - at)
    message["originalTimestamp"] = value
    try:
        message["timestamp"] = iso(at)
    except (OverflowError, OSError, ValueError):
        raise Invalid(
            f"timestamp {value[:40]!r} is out of range once corrected by sentAt"
        ) from None


def encode(message: dict[str, Any]) -> bytes:
    """The stream payload; raises Invalid over 32 KB or when JSON cannot hold it (orjson
    encodes at most 254 levels of nesting, fewer than it decodes)."""
    try:
        payload = orjson.dumps(message)
    except orjson.JSONEncodeError as exc:
        raise Invalid(f"message cannot be stored as JSON: {exc}") from None
    if len(payload) > MAX_MESSAGE_BYTES:
        raise MessageTooLarge(
            f"message is {len(payload)} bytes, over the {MAX_MESSAGE_BYTES} byte limit"
        )
    return payload


def message_id_of(raw: Any) -> str | None:
    value = raw.get("messageId") if isinstance(raw, dict) else None
    return value if isinstance(value, str) else None


# ---------------------------------------------------------------- OpenAPI documentation


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    userId: str | None = Field(default=None, max_length=MAX_ID_LENGTH)
    anonymousId: str | None = Field(default=None, max_length=MAX_ID_LENGTH)
    messageId: str | None = Field(default=None, description="dedupe key; generated when absent")
    timestamp: str | None = Field(default=None, description="ISO-8601; `Z` or an offset")
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    writeKey: str | None = Field(default=None, description="or HTTP basic auth user name")


class TrackMessage(_Message):
    type: Literal["track"] = "track"
    event: str
    properties: dict[str, Any] | None = None


class IdentifyMessage(_Message):
    type: Literal["identify"] = "identify"
    traits: dict[str, Any] | None = None


class PageMessage(_Message):
    type: Literal["page", "screen"] = "page"
    name: str | None = None
    category: str | None = None
    properties: dict[str, Any] | None = None


class GroupMessage(_Message):
    type: Literal["group"] = "group"
    groupId: str
    traits: dict[str, Any] | None = None


class AliasMessage(_Message):
    type: Literal["alias"] = "alias"
    previousId: str


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    batch: list[dict[str, Any]] = Field(max_length=MAX_BATCH_MESSAGES)
    writeKey: str | None = None
    sentAt: str | None = None
    context: dict[str, Any] | None = Field(default=None, description="merged into each message")
    integrations: dict[str, Any] | None = None


class RejectedMessage(BaseModel):
    index: int
    messageId: str | None
    detail: str


class TrackingAnswer(BaseModel):
    success: bool = True
    accepted: int | None = Field(default=None, description="only when some were rejected")
    rejected: list[RejectedMessage] | None = Field(
        default=None, description="only when some were rejected"
    )
