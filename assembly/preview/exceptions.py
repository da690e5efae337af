"""Errors of draft preview; all render as `{"error", "detail"}`."""

from __future__ import annotations

from core.errors import BridgeError


class PreviewError(BridgeError):
    status_code = 422


class PreviewUnauthorized(PreviewError):
    """No preview key, or a wrong one."""

    status_code = 401


class PreviewDisabled(PreviewError):
    """Neither BRIDGE_PREVIEW_KEY nor BRIDGE_ADMIN_TOKEN is set: nobody may preview."""

    status_code = 403


class PreviewTargetNotFound(PreviewError):
    """A forced audience, variant, arm or experiment the library does not have."""

    status_code = 404


class EntryNotUsed(PreviewError):
    """No template uses the entry (`GET /preview/entry/{id}`)."""

    status_code = 404


class DraftsUnavailable(PreviewError):
    """The Preview API failed (outage, rejected token); the detail says how."""

    status_code = 503
