"""Errors of model training and loading."""

from __future__ import annotations

from core.errors import BridgeError


class LearningError(BridgeError):
    status_code = 500


class ModelInvalid(LearningError):
    """An artifact that fails its schema or checksum: the replica decides by the rules."""

    status_code = 422


class NothingToTrain(LearningError):
    """Too few logged exposures or conversions to fit any slot's model."""

    status_code = 409
