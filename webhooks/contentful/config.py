"""Contentful webhook settings (`CONTENTFUL_WEBHOOK_*`)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from core.settings import BridgeBaseSettings, SettingsConfigDict, secret_list

# The bundled demo space (templates/demo-space.json): the space and environment a webhook must
# name when CONTENTFUL_SPACE_ID is unset.
DEMO_SPACE_ID = "microbridge-demo"
DEMO_ENVIRONMENT = "master"


class ContentfulWebhookSettings(BridgeBaseSettings):
    """`CONTENTFUL_WEBHOOK_SECRETS` unset or empty → `POST /webhooks/contentful` answers 404."""

    model_config = SettingsConfigDict(env_prefix="CONTENTFUL_WEBHOOK_")

    secrets: SecretStr | None = None
    ttl_seconds: float = Field(default=30.0, ge=0)
    dedupe_ttl_seconds: int = Field(default=24 * 3600, ge=1)
    resync_delay_seconds: float = Field(default=2.0, ge=0)
    resync_max_delay_seconds: float = Field(default=30.0, ge=0)

    @property
    def secret_list(self) -> tuple[str, ...]:
        """The accepted signing secrets: comma-separated, trimmed, empty ones dropped."""
        return secret_list(self.secrets)

    @property
    def enabled(self) -> bool:
        return bool(self.secret_list)
