"""Settings of the tracking API, the event stream and the profiles it feeds (`SEGMENT_*`).

`SEGMENT_WRITE_KEYS` unset disables the tracking API (`/v1/batch` and friends answer 404). The
webhook receiver and the Profile API pull have their own settings (webhook_config.py) under the
same prefix. Every duration is in seconds unless its name says otherwise; docs/events.md explains
what each one changes.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from pydantic import Field, SecretStr, field_validator

from core.settings import BridgeBaseSettings, SettingsConfigDict, secret_list

DAY = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Ingest:
    """Where accepted messages go: how many stream shards, and the replicas to wait for."""

    shards: int = 1
    wait_replicas: int = 0
    wait_ms: int = 500


@dataclass(frozen=True, slots=True)
class SignalRules:
    """What the pure signal functions need from the settings (signals.py, state.py)."""

    session_timeout: float = 1800.0
    dwell_view_cap: float = 600.0
    cart_window: float = 1800.0
    half_life: float = 7 * DAY
    dwell_seconds_per_point: float = 30.0
    recent_events: int = 20
    consent_category: str = "personalization"


class SegmentSettings(BridgeBaseSettings):
    model_config = SettingsConfigDict(env_prefix="SEGMENT_")

    # --- tracking API
    write_keys: SecretStr | None = None
    """Comma-separated write keys the tracking API accepts (rotation: list old and new)."""
    server_write_keys: SecretStr | None = None
    """Comma-separated write keys held only by the operator's servers (accepted too): messages
    sent with one may carry Engage audiences and personas; other write keys' are ignored."""

    # --- the event stream
    stream_max_len: int = Field(default=1_000_000, ge=1000)
    """Hard cap (`XADD MAXLEN ~`): size it as peak events/s times the outage to survive."""
    stream_max_age_seconds: float = Field(default=7 * DAY, gt=0)
    """Processed entries older than this are trimmed (`XTRIM MINID ~`); unprocessed ones never."""
    stream_shards: int = Field(default=1, ge=1, le=64)
    """Streams the events are spread over, by visitor, one consumer group each (docs/operations.md
    "Redis Cluster"): about one per master. Changing it needs the old shards drained first."""
    ingest_wait_replicas: int = Field(default=0, ge=0, le=5)
    """With R > 0 the tracking API answers 200 only once R replicas hold the events (`WAIT`),
    else 503: an acknowledged event then survives the loss of its master."""
    ingest_wait_ms: int = Field(default=500, ge=1, le=10_000)
    dead_letter_max_len: int = Field(default=100_000, ge=100)
    dead_letter_max_age_seconds: float = Field(default=14 * DAY, gt=0)

    # --- consumers
    consumer_enabled: bool = True
    """Run one consumer inside the service; `false` when only `cli.py worker` processes apply."""
    consumer_group: str = Field(default="profiles", min_length=1, max_length=100)
    consumer_name: str | None = Field(default=None, min_length=1, max_length=200)
    """Default `<host>-<pid>-<random>`: a restarted process is a new consumer."""
    consumer_batch_size: int = Field(default=512, ge=1, le=5000)
    consumer_block_ms: int = Field(default=1000, ge=1, le=60_000)
    claim_idle_ms: int = Field(default=30_000, ge=1)
    """A pending entry idle this long belongs to a dead (or stuck) consumer and is reclaimed."""
    claim_interval_seconds: float = Field(default=5.0, gt=0)
    max_deliveries: int = Field(default=5, ge=1, le=100)
    """An entry delivered more often than this without success goes to the dead-letter stream."""
    dedupe_window_seconds: float = Field(default=DAY, ge=60)
    """How long an applied `messageId` is remembered per visitor."""

    # --- profiles and signals
    profile_ttl_seconds: float = Field(default=30 * DAY, ge=60)
    cart_abandon_seconds: float = Field(default=1800.0, gt=0)
    engagement_half_life_seconds: float = Field(default=7 * DAY, gt=0)
    engagement_dwell_seconds: float = Field(default=30.0, gt=0)
    """Seconds of dwell time worth one engagement point (a click is one point)."""
    session_timeout_seconds: float = Field(default=1800.0, gt=0)
    dwell_view_cap_seconds: float = Field(default=600.0, gt=0)
    """The most one product view counts towards `signals.dwell.<productId>`."""
    recent_events: int = Field(default=20, ge=0, le=200)
    max_linked_ids: int = Field(default=20, ge=1, le=1000)
    """Ids (anonymousIds, aliased userIds) kept in sync with one merged profile."""
    consent_category: str = Field(default="personalization", min_length=1)
    """The `context.consent.categoryPreferences` entry that grants personalization."""

    @field_validator("write_keys", "server_write_keys")
    @classmethod
    def _empty_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value().strip() else None

    @property
    def write_key_list(self) -> tuple[str, ...]:
        return secret_list(self.write_keys)

    @property
    def server_write_key_list(self) -> tuple[str, ...]:
        return secret_list(self.server_write_keys)

    def rules(self) -> SignalRules:
        return SignalRules(
            session_timeout=self.session_timeout_seconds,
            dwell_view_cap=self.dwell_view_cap_seconds,
            cart_window=self.cart_abandon_seconds,
            half_life=self.engagement_half_life_seconds,
            dwell_seconds_per_point=self.engagement_dwell_seconds,
            recent_events=self.recent_events,
            consent_category=self.consent_category,
        )

    def ingest(self) -> Ingest:
        return Ingest(self.stream_shards, self.ingest_wait_replicas, self.ingest_wait_ms)

    def consumer_id(self) -> str:
        if self.consumer_name:
            return self.consumer_name
        return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
