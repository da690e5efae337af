"""Preview decisions: the page as a visitor would get it, from drafts, with what an editor forces.

A preview reads no profile and writes nothing: the visitor is the request's context only, the
decision state is empty, and the writes the engine returns are dropped (no exposures, caps,
sticky assignments or session marks), so the store is exactly as before. Admin kill switches still
apply. An editor may force audiences (the visitor is in exactly those), a variant per slot,
or an experiment arm; forced slots say so in their `reason`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from assembly.decisions.engine import DecisionEngine
from assembly.decisions.outcome import Decision
from assembly.decisions.selection import locale_of, select_slots
from assembly.decisions.sequencing import Placed
from assembly.decisions.state import EMPTY_STATE
from assembly.decisions.visitor import build_visitor
from assembly.exceptions import ContentUnavailable
from assembly.ports import LibrarySource
from assembly.preview.drafts import DraftCache
from assembly.preview.forcing import force_decisions, forced_visitor
from assembly.schemas import AssembleRequest, PreviewOptions
from integration.library import Library
from integration.model import Slot, Template

Content = Literal["drafts", "published"]

NO_PREVIEW_TOKEN = (
    "CONTENTFUL_PREVIEW_TOKEN is not set, so drafts cannot be fetched: this is the published "
    "library"
)


@dataclass(frozen=True, slots=True)
class PreviewResult:
    """One previewed page: the library it was decided on, and every slot's decision."""

    library: Library
    template: Template | None
    locale: str
    placed: list[Placed]
    content: Content
    note: str | None
    fetched_at: float | None
    options: PreviewOptions

    def slot_json(self, slot: Slot, decision: Decision) -> dict[str, Any]:
        variant = decision.variant
        entry_id = variant.entry_id if variant else slot.baseline_id
        rendered = self.library.render(entry_id, variant, self.locale)
        return {
            "slot": slot.key,
            "variant": variant.key if variant else None,
            "source": decision.source,
            "reason": decision.reason,
            "experiment": decision.experiment,
            "entry": orjson.loads(orjson.dumps(rendered.entry)) if rendered else None,
            "style": orjson.loads(orjson.dumps(rendered.style)) if rendered else {},
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "template": self.template.key if self.template else None,
            "locale": self.locale,
            "contentVersion": self.library.version,
            "degraded": False,
            "decisionId": preview_decision_id(),
            "slots": [self.slot_json(s, d) for s, d in self.placed],
            "preview": {
                "content": self.content,
                "detail": self.note,
                "fetchedAt": self.fetched_at,
                "forced": self.options.model_dump(exclude={"content"}),
            },
        }


class PreviewService:
    """Decides previews over the draft library (or the published one), writing nothing."""

    def __init__(
        self,
        published: LibrarySource,
        drafts: DraftCache | None,
        engine: DecisionEngine,
        *,
        key: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._published = published
        self.drafts = drafts
        self.engine = engine
        self.key = key
        self.clock = clock

    async def library(self, content: Content) -> tuple[Library, Content, str | None, float | None]:
        """The library to decide on: (library, what it is, a note for the editor, fetched at)."""
        if content == "drafts" and self.drafts is not None:
            drafts = await self.drafts.get()
            return drafts.library, "drafts", None, drafts.fetched_at
        library = self._published.library
        if library is None:
            raise ContentUnavailable("no library is loaded yet; retry shortly")
        note = NO_PREVIEW_TOKEN if content == "drafts" else None
        return library, "published", note, None

    async def preview(self, request: AssembleRequest) -> PreviewResult:
        options = request.previewOptions or PreviewOptions()
        library, content, note, fetched_at = await self.library(options.content)
        template, slots = select_slots(library, request)
        locale = locale_of(library, request.locale)
        visitor = forced_visitor(build_visitor(request, None), library, options.audiences)
        placed = self.engine.decide_page(
            library, template, slots, visitor, EMPTY_STATE, self.clock()
        ).placed  # a preview writes nothing
        placed = force_decisions(library, placed, options)
        return PreviewResult(library, template, locale, placed, content, note, fetched_at, options)


def preview_decision_id() -> str:
    """An id shaped like every answer's (12 hex digits of Unix ms, 12 random); a preview is
    never logged, so no record answers to it."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(6)}"
