"""Errors of `model apply`; Contentful's own failures stay `integration.exceptions` errors."""

from __future__ import annotations

from core.errors import BridgeError


class ContentModelError(BridgeError):
    """Base of every content-model failure that is not Contentful's answer."""

    status_code = 400


class ContentModelInvalid(ContentModelError):
    """`templates/content-model.json` is not a content model we can apply."""

    status_code = 500


class ManagementNotConfigured(ContentModelError):
    """No management token, or no space to apply the model to."""


class ModelApplyRefused(ContentModelError):
    """Applying the model would lose data (or ask Contentful for what it cannot do)."""

    status_code = 409
