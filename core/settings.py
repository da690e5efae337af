"""Settings shared by every package: the base class, the service and store settings."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "BridgeBaseSettings",
    "ServiceSettings",
    "SettingsConfigDict",
    "StoreSettings",
    "base_url",
    "deferred",
    "secret_list",
]


def base_url(value: str) -> str:
    """Validate an http(s) base URL (no path, no query) and drop a trailing slash."""
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL")
    if parts.path not in {"", "/"} or parts.query:
        raise ValueError(f"{value!r} must be a base URL without path or query")
    return value.rstrip("/")


class BridgeBaseSettings(BaseSettings):
    """Base for every package's settings: environment first, then `.env`."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)


class ServiceSettings(BridgeBaseSettings):
    """The service itself (`BRIDGE_*`)."""

    model_config = SettingsConfigDict(env_prefix="BRIDGE_")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    admin_token: SecretStr | None = None
    log_level: str = "info"
    log_json: bool = True
    link_depth: int = Field(default=2, ge=0, le=10)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    library_poll_seconds: float = Field(default=5.0, gt=0)
    # The last complete library, written after each generation (docs/operations.md).
    snapshot_path: Path = Path("data/last-good-library.json")
    # HTTP server limits (core/server.py, core/limits.py; docs/operations.md "HTTP server").
    keep_alive_seconds: int = Field(default=75, ge=1)
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    body_timeout_seconds: float = Field(default=30.0, gt=0)
    graceful_shutdown_seconds: int = Field(default=25, ge=0)
    max_connections: int = Field(default=0, ge=0)
    backlog: int = Field(default=2048, ge=1)
    cors_origins: str = ""
    cors_max_age_seconds: int = Field(default=600, ge=0)

    @property
    def cors_origin_list(self) -> tuple[str, ...]:
        return tuple(o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip())

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        for origin in (o.strip() for o in value.split(",") if o.strip() not in {"", "*"}):
            parts = urlsplit(origin)
            if parts.scheme not in {"http", "https"} or not parts.hostname:
                raise ValueError(f"{origin!r} is not an origin like https://shop.example.com")
            if parts.path not in {"", "/"} or parts.query:
                raise ValueError(f"{origin!r} is an origin: scheme, host and port only")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.lower()
        if level not in {"debug", "info", "warning", "error"}:
            raise ValueError("must be one of debug, info, warning, error")
        return level


def deferred(given: ServiceSettings | None) -> Callable[[], ServiceSettings]:
    """`given`, or the environment's settings read once, on first call.

    Middleware of `create_app()` without settings (`uvicorn app:app`) calls it at the first
    request, after the lifespan has validated the same environment.
    """
    if given is not None:
        return lambda: given
    return functools.cache(ServiceSettings)


class StoreSettings(BridgeBaseSettings):
    """Redis (`REDIS_URL`, `REDIS_*`); unset URL → in-process embedded store."""

    model_config = SettingsConfigDict(env_prefix="REDIS_")

    url: str | None = None
    # A Redis Cluster: `REDIS_URL` names any node of it (docs/operations.md "Redis Cluster").
    cluster: bool = False
    key_prefix: str = "mb"
    socket_timeout: float = Field(default=0.5, gt=0)
    connect_timeout: float = Field(default=0.5, gt=0)
    max_connections: int = Field(default=64, ge=1)

    @field_validator("url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("key_prefix")
    @classmethod
    def _plain_prefix(cls, value: str) -> str:
        if not value or any(c in value for c in "{}: "):
            raise ValueError("must be non-empty without braces, colons or spaces")
        return value


def secret_list(value: SecretStr | None) -> tuple[str, ...]:
    """A comma-separated secret setting (signing secrets, write keys) as its trimmed,
    non-empty parts; () when unset. The one parser of such lists."""
    if value is None:
        return ()
    parts = (part.strip() for part in value.get_secret_value().split(","))
    return tuple(part for part in parts if part)
