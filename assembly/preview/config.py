"""Preview settings (`BRIDGE_PREVIEW_*`); see docs/operations.md."""

from __future__ import annotations

from pydantic import Field, SecretStr

from core.settings import BridgeBaseSettings, SettingsConfigDict


class PreviewSettings(BridgeBaseSettings):
    model_config = SettingsConfigDict(env_prefix="BRIDGE_PREVIEW_")

    key: SecretStr | None = None
    """The preview secret (`X-Preview-Key` header or `?key=`); the admin token works too."""
    cache_seconds: float = Field(default=5.0, ge=0, le=300)
    """Drafts fetched from the Preview API are reused this long (one fetch at a time)."""
