"""Errors raised while receiving webhooks; each carries the HTTP status the router answers with.

Details name the header or check that failed and never include a secret, a signature we
computed, or the request body.
"""

from __future__ import annotations

from core.errors import BridgeError


class WebhookError(BridgeError):
    """Base of every webhook error."""

    status_code = 400


class SignatureMissing(WebhookError):
    """A required signature header is absent or empty."""

    status_code = 400


class SignatureMalformed(WebhookError):
    """A signature header is present but cannot be parsed."""

    status_code = 400


class SignatureExpired(WebhookError):
    """The signed timestamp is outside the accepted window (too old or too far ahead)."""

    status_code = 401


class SignatureInvalid(WebhookError):
    """The signature does not match the request for any configured secret."""

    status_code = 401
