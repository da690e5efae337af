"""Contentful settings (`CONTENTFUL_*`)."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator, model_validator

from core.settings import BridgeBaseSettings, SettingsConfigDict, base_url


class ContentfulSettings(BridgeBaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONTENTFUL_")

    space_id: str | None = None
    access_token: SecretStr | None = None
    environment: str = "master"
    cda_url: str = "https://cdn.contentful.com"
    preview_token: SecretStr | None = None
    preview_url: str = "https://preview.contentful.com"
    # Content Management API, for `cli.py model apply` only (never used by the service).
    management_token: SecretStr | None = None
    management_url: str = "https://api.contentful.com"
    sync_interval_seconds: float = Field(default=30.0, ge=0)
    # The sync lease: renewed every third of its life while a sync runs, so a dead holder
    # blocks the next sync for at most this long.
    sync_lease_seconds: float = Field(default=15.0, ge=1)
    timeout_seconds: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=5, ge=1, le=20)
    max_wait_seconds: float = Field(default=60.0, gt=0)

    @field_validator("cda_url", "preview_url", "management_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return base_url(value)

    @model_validator(mode="after")
    def _credentials_together(self) -> ContentfulSettings:
        if self.space_id and self.access_token is None:
            raise ValueError("CONTENTFUL_ACCESS_TOKEN is required when CONTENTFUL_SPACE_ID is set")
        if self.access_token is not None and not self.space_id:
            raise ValueError("CONTENTFUL_SPACE_ID is required when CONTENTFUL_ACCESS_TOKEN is set")
        return self

    @property
    def configured(self) -> bool:
        return bool(self.space_id)
