"""Settings of trigger discovery (`INSIGHTS_*`): where reports go, and the bounds of a run."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from core.settings import BridgeBaseSettings, SettingsConfigDict

JSON_NAME = "insights.json"
HTML_NAME = "insights.html"


class InsightsSettings(BridgeBaseSettings):
    model_config = SettingsConfigDict(env_prefix="INSIGHTS_")

    dir: Path = Path("data/insights")
    """Folder of insights.json and insights.html (`cli.py insights` writes, the route reads)."""
    max_visitors: int = Field(default=50_000, ge=10)
    """Distinct visitors read at most; later visitors are left out."""
    max_events: int = Field(default=200_000, ge=100)
    """Stream entries read at most (XRANGE stops there); each is held in memory (about 1 KB+)."""
    time_budget_seconds: float = Field(default=120.0, gt=0)
    """Reading stops when this has passed; the report says it was truncated."""
