"""The bundled fallback library (`templates/fallback.json`): content for when no library is live.

It holds, per slot, a baseline entry already localized, and per template its slot keys. It is
exported from a compiled library by `python cli.py fallback export`, so that it matches the
space it stands in for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import structlog

from integration.library import Library, RenderedEntry

log = structlog.get_logger()

FALLBACK_FILE = Path(__file__).resolve().parent.parent / "templates" / "fallback.json"


@dataclass(frozen=True, slots=True)
class FallbackLibrary:
    locale: str = "en-US"
    templates: dict[str, tuple[str, ...]] = field(default_factory=dict)
    slots: dict[str, RenderedEntry] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path = FALLBACK_FILE) -> FallbackLibrary:
        if not path.exists():
            return cls()
        data = orjson.loads(path.read_bytes())
        return cls(
            locale=data.get("locale", "en-US"),
            templates={k: tuple(v) for k, v in data.get("templates", {}).items()},
            slots={
                key: RenderedEntry(
                    entry=orjson.Fragment(orjson.dumps(slot["entry"])),
                    style=orjson.Fragment(orjson.dumps(slot.get("style", {}))),
                )
                for key, slot in data.get("slots", {}).items()
            },
        )


class FallbackState:
    """Whether answers come from the fallback library, logged once per change of state.

    Every fallback answer is counted (`microbridge_fallback_total`); the log has one
    `assembly.fallback_started` line when it begins (or its cause changes) and one
    `assembly.fallback_ended` when a library is live again, not one line per page view.
    """

    __slots__ = ("cause",)

    def __init__(self) -> None:
        self.cause: str | None = None

    def used(self, cause: str) -> None:
        if cause != self.cause:
            self.cause = cause
            log.warning("assembly.fallback_started", cause=cause)

    def recovered(self) -> None:
        if self.cause is not None:
            log.info("assembly.fallback_ended", cause=self.cause)
            self.cause = None


def export_fallback(library: Library, locale: str | None = None) -> dict[str, Any]:
    """The JSON document of a fallback library built from the baselines of `library`."""
    locale = locale or library.default_locale
    slots: dict[str, Any] = {}
    for key, slot in sorted(library.slots.items()):
        rendered = library.render(slot.baseline_id, None, locale)
        if rendered is not None:
            slots[key] = {
                "entry": orjson.loads(orjson.dumps(rendered.entry)),
                "style": orjson.loads(orjson.dumps(rendered.style)),
            }
    templates = {k: [s.key for s in t.slots] for k, t in sorted(library.templates.items())}
    return {
        "locale": locale,
        "contentVersion": library.version,
        "templates": templates,
        "slots": slots,
    }
