"""Settings of model training (`LEARNING_*`): the bounds of a `cli.py train` run."""

from __future__ import annotations

from pydantic import Field

from core.settings import BridgeBaseSettings, SettingsConfigDict


class LearningSettings(BridgeBaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEARNING_")

    max_decisions: int = Field(default=200_000, ge=100)
    """Decision-log records read at most (each kept exposure holds its visitor's features)."""
    max_events: int = Field(default=1_000_000, ge=100)
    """Event-stream entries scanned at most for goal events (only goal times are kept)."""
    time_budget_seconds: float = Field(default=300.0, gt=0)
    """Reading stops when this has passed; the summary says what was truncated."""
    attribution_seconds: float = Field(default=86_400.0, gt=0)
    """A goal event this long after an exposure, or less, counts as its conversion."""
    min_exposures: int = Field(default=30, ge=2)
    """Exposures a variant needs to get a model (else the model leaves it out: rules decide)."""
    min_conversions: int = Field(default=3, ge=1)
    """Conversions (and non-conversions) a variant needs to get a model."""
    max_features: int = Field(default=64, ge=1)
    """Features in the vector at most (the most common leaves are kept)."""
    keep_versions: int = Field(default=5, ge=1)
    """Published artifacts kept in Redis (older versions are deleted on publish)."""
