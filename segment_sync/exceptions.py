"""Errors of the tracking API and the event pipeline; each carries its HTTP status."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.errors import BridgeError


class SegmentSyncError(BridgeError):
    """Base of every error of the Segment package."""

    status_code = 400


class TrackingDisabled(SegmentSyncError):
    """No write key is configured, so the tracking API does not exist."""

    status_code = 404


class WriteKeyInvalid(SegmentSyncError):
    """The write key is missing or not one of `SEGMENT_WRITE_KEYS`."""

    status_code = 401


class InvalidPayload(SegmentSyncError):
    """The body is not what the endpoint takes: bad JSON, not an object, no `batch` list."""


class InvalidMessage(SegmentSyncError):
    """The one message of `/v1/track` (and the other single calls) is not acceptable."""


class UnsupportedEncoding(SegmentSyncError):
    status_code = 415


class PayloadTooLarge(SegmentSyncError):
    """Over 500 KB per batch (compressed or not), or over 32 KB for a single call."""

    status_code = 413


class TooManyMessages(SegmentSyncError):
    """More than 2,500 messages in one batch."""


class MessagesRejected(SegmentSyncError):
    """Every message of the request was invalid; nothing was stored.

    `rejected` lists `{"index", "messageId", "detail"}` per message, as the partial answer does.
    """

    def __init__(self, detail: str, rejected: Sequence[dict[str, Any]]) -> None:
        super().__init__(detail)
        self.rejected = list(rejected)


class ProfileErasureFailed(SegmentSyncError):
    """The erasure could not finish (the store kept changing or failing); retry it."""

    status_code = 503


class EventStoreUnavailable(SegmentSyncError):
    """Redis did not take the events; nothing is acknowledged, the client retries."""

    status_code = 503
