"""Errors of trigger discovery."""

from __future__ import annotations

from core.errors import InvalidRequest, NotFound


class InsightsNotFound(NotFound):
    """No report has been written yet (run `cli.py insights`)."""


class InvalidWindow(InvalidRequest):
    """A window that is not `<number><s|m|h|d>`."""
