"""The editors' preview page: query parameters in, server-rendered HTML out (Jinja2).

Everything the page needs is inline (CSS, no script, no CDN): it works offline and inside
Contentful's preview pane. Templates live next to this module, in `templates/`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from assembly.preview.forcing import audiences_of, experiments_of, slot_choices
from assembly.preview.service import Content, PreviewResult
from assembly.schemas import AssembleRequest, PreviewOptions, UserRef
from core.errors import InvalidRequest

TEMPLATES = Path(__file__).resolve().parent / "templates"
PREVIEW_VISITOR = "preview"  # the anonymousId the page decides for (experiments bucket on it)

_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True, slots=True)
class PageQuery:
    """The page's controls, as the GET form sends them."""

    template: str
    key: str | None = None
    content: Content = "drafts"
    locale: str | None = None
    audiences: tuple[str, ...] = ()
    variants: dict[str, str] = field(default_factory=dict)
    arms: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(
        cls,
        template: str,
        *,
        key: str | None,
        content: Content,
        locale: str | None,
        audience: list[str],
        variant: list[str],
        arm: list[str],
    ) -> PageQuery:
        return cls(
            template=template,
            key=key or None,
            content=content,
            locale=locale or None,
            audiences=tuple(a for a in audience if a),
            variants=_pairs("variant", variant),
            arms=_pairs("arm", arm),
        )

    def request(self) -> AssembleRequest:
        options = PreviewOptions(
            content=self.content,
            audiences=list(self.audiences) or None,
            variants=self.variants,
            arms=self.arms,
        )
        return AssembleRequest(
            template=self.template,
            locale=self.locale,
            user=UserRef(anonymousId=PREVIEW_VISITOR),
            preview=True,
            previewOptions=options,
        )


def _pairs(name: str, values: list[str]) -> dict[str, str]:
    """`slot:variant` (or `experiment:arm`) values; empty ones mean "the rules decide"."""
    pairs: dict[str, str] = {}
    for value in values:
        if not value:
            continue
        left, sep, right = value.partition(":")
        if not (sep and left and right):
            raise InvalidRequest(f"{name}: {value!r} is not <key>:<choice>")
        pairs[left] = right
    return pairs


def page_url(path: str, key: str | None, **params: str) -> str:
    """A preview URL carrying the key the editor came with."""
    query = {**({"key": key} if key else {}), **params}
    return f"{path}?{urlencode(query)}" if query else path


def render_page(result: PreviewResult, query: PageQuery) -> str:
    library = result.library
    experiments = experiments_of(library)
    slot_keys = {slot.key for slot, _ in result.placed}
    context = {
        "query": query,
        "result": result,
        "fetched": _when(result.fetched_at),
        "locales": sorted(library.locales),
        "audiences": sorted(audiences_of(library)),
        "experiments": [
            (key, arms.labels)
            for key, arms in sorted(experiments.items())
            if any(key in slot.arms for slot, _ in result.placed)
        ],
        "slots": [_slot_view(result, slot, decision, query) for slot, decision in result.placed],
        "slot_keys": slot_keys,
    }
    return _env.get_template("page.html").render(context)


def render_entry_links(entry_id: str, links: list[tuple[str, str, str]]) -> str:
    """The templates that use an entry: (template key, how, URL)."""
    return _env.get_template("entry.html").render(entry_id=entry_id, links=links)


def _slot_view(result: PreviewResult, slot: Any, decision: Any, query: PageQuery) -> dict[str, Any]:
    answer = result.slot_json(slot, decision)
    entry = answer["entry"] or {}
    return {
        **answer,
        "entry_id": entry.get("id"),
        "content_type": entry.get("contentType"),
        "fields": [_field(name, value) for name, value in (entry.get("fields") or {}).items()],
        "style_text": json.dumps(answer["style"], indent=2, ensure_ascii=False)
        if answer["style"]
        else None,
        "experiment_text": json.dumps(answer["experiment"]) if answer["experiment"] else None,
        "choices": list(slot_choices(slot)),
        "forced": query.variants.get(slot.key, ""),
    }


def _field(name: str, value: Any) -> dict[str, Any]:
    if isinstance(value, str | int | float | bool) or value is None:
        return {"name": name, "text": str(value), "json": None}
    return {"name": name, "text": None, "json": json.dumps(value, indent=2, ensure_ascii=False)}


def _when(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
