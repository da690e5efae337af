"""Errors of the Contentful integration: everything the adapter raises derives from these."""

from __future__ import annotations

from core.errors import BridgeError


class ContentfulError(BridgeError):
    """Base of every Contentful failure (bad gateway to callers of our API).

    `upstream_status` is the HTTP status Contentful answered with, when it answered at all;
    `error_id` is its `sys.id` (`AccessTokenInvalid`, `NotFound`, `BadRequest`, ...).
    """

    status_code = 502

    def __init__(
        self,
        detail: str,
        *,
        upstream_status: int | None = None,
        error_id: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.upstream_status = upstream_status
        self.error_id = error_id


class ContentfulUnavailable(ContentfulError):
    """Transient failures (429, 5xx, timeouts, refused connections) outlasted every retry."""

    status_code = 503


class ContentfulRequestRejected(ContentfulError):
    """Contentful refused the request for good (a 4xx other than 429): retrying cannot help.

    Typical causes: a wrong access token (401), an unknown space or environment (404), an
    invalid or expired sync token (400).
    """
