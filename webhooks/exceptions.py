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
    """A required signature header is absent or empty (an authentication failure: 401)."""

    status_code = 401


class SignatureMalformed(WebhookError):
    """A signature header is present but cannot be parsed (an authentication failure: 401)."""

    status_code = 401


class SignatureExpired(WebhookError):
    """The signed timestamp is outside the accepted window (too old or too far ahead)."""

    status_code = 401


class SignatureInvalid(WebhookError):
    """The signature does not match the request for any configured secret."""

    status_code = 401


class WebhookDisabled(WebhookError):
    """The endpoint has no signing secret configured, so it does not exist."""

    status_code = 404


class InvalidPayload(WebhookError):
    """A verified request whose body or headers are not what the provider sends."""

    status_code = 400


class WebhookStoreUnavailable(WebhookError):
    """The store could not make the effect durable; the provider should retry."""

    status_code = 503
