"""Settings of the Segment webhook receiver and the Profile API pull (`SEGMENT_*`).

`SEGMENT_WEBHOOK_SECRETS` unset disables `POST /webhooks/segment` (404); the Profile API pull
runs only when both `SEGMENT_PROFILE_SPACE_ID` and `SEGMENT_PROFILE_TOKEN` are set.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator, model_validator

from core.settings import BridgeBaseSettings, SettingsConfigDict, base_url, secret_list


class SegmentWebhookSettings(BridgeBaseSettings):
    model_config = SettingsConfigDict(env_prefix="SEGMENT_")

    # --- POST /webhooks/segment
    webhook_secrets: SecretStr | None = None
    """Comma-separated shared secrets; any one verifies a request (rotation)."""
    webhook_accept_batches: bool = False
    """Accept Actions batches, which Segment signs over their first event only."""
    webhook_dedupe_seconds: int = Field(default=24 * 3600, ge=60)
    """How long a `messageId` is remembered; a replay inside the window changes nothing."""
    webhook_claim_seconds: int = Field(default=30, ge=1)
    """How long an event being enqueued blocks a concurrent copy of itself."""

    # --- Profile API pull
    profile_space_id: str | None = None
    profile_token: SecretStr | None = None
    profile_url: str = "https://profiles.segment.com"
    profile_timeout_seconds: float = Field(default=5.0, gt=0)
    profile_max_attempts: int = Field(default=4, ge=1, le=10)
    profile_backoff_seconds: float = Field(default=0.5, ge=0)
    """First exponential backoff step (doubles per attempt, with jitter) without a server hint."""
    profile_max_wait_seconds: float = Field(default=30.0, gt=0)
    """Longest wait between attempts; a longer `Retry-After` ends the pull instead."""
    profile_max_pages: int = Field(default=10, ge=1, le=100)
    profile_cache_seconds: int = Field(default=3600, ge=1)
    """After a pull, no other pull of that user for this long."""
    profile_negative_cache_seconds: int = Field(default=300, ge=1)
    """After a 404 or a failed pull, no other pull of that user for this long."""
    profile_concurrency: int = Field(default=4, ge=1, le=64)
    profile_max_pending: int = Field(default=1000, ge=1)
    """Pulls waiting at once per process; misses beyond are dropped (and counted)."""

    @field_validator("profile_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return base_url(value)

    @field_validator("profile_space_id")
    @classmethod
    def _plain_space(cls, value: str | None) -> str | None:
        if value and any(not (c.isalnum() or c in "-_") for c in value):
            raise ValueError("must contain only letters, digits, '-' and '_'")
        return value or None

    @field_validator("profile_token", "webhook_secrets")
    @classmethod
    def _empty_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value().strip() else None

    @model_validator(mode="after")
    def _profile_credentials_together(self) -> SegmentWebhookSettings:
        if self.profile_space_id and self.profile_token is None:
            raise ValueError(
                "SEGMENT_PROFILE_TOKEN is required when SEGMENT_PROFILE_SPACE_ID is set"
            )
        if self.profile_token is not None and not self.profile_space_id:
            raise ValueError(
                "SEGMENT_PROFILE_SPACE_ID is required when SEGMENT_PROFILE_TOKEN is set"
            )
        return self

    @property
    def secrets(self) -> tuple[str, ...]:
        """The configured webhook secrets, trimmed, empties dropped; () when disabled."""
        return secret_list(self.webhook_secrets)

    @property
    def profile_configured(self) -> bool:
        return bool(self.profile_space_id) and self.profile_token is not None
