"""Builds the preview service once, in assembly's start (assembly/wiring.py)."""

from __future__ import annotations

from assembly.config import DecisionSettings
from assembly.decisions.engine import DecisionEngine
from assembly.killswitch import SwitchWatcher
from assembly.ports import LibrarySource
from assembly.preview.config import PreviewSettings
from assembly.preview.drafts import DraftCache, DraftSource
from assembly.preview.service import PreviewService


def build_preview(
    settings: PreviewSettings,
    source: DraftSource | None,
    published: LibrarySource,
    decisions: DecisionSettings,
    switches: SwitchWatcher,
    *,
    link_depth: int,
) -> PreviewService:
    """Drafts from `source` (None: no CONTENTFUL_PREVIEW_TOKEN, the published library stands
    in); decisions by an engine that shares the kill switches (their writes are dropped)."""

    def version() -> int:
        library = published.library
        return library.version if library is not None else 0

    drafts = None
    if source is not None:
        drafts = DraftCache(
            source, ttl=settings.cache_seconds, link_depth=link_depth, version=version
        )
    engine = DecisionEngine(decisions, switches=switches)
    key = settings.key.get_secret_value() if settings.key else None
    return PreviewService(published, drafts, engine, key=key)
