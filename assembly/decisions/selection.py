"""Which slots and locale a request asks for: shared by assemble, preview and explain."""

from __future__ import annotations

from assembly.exceptions import SlotNotFound, TemplateNotFound, UnknownLocale
from assembly.schemas import AssembleRequest
from integration.library import Library
from integration.model import Slot, Template


def select_slots(
    library: Library, request: AssembleRequest
) -> tuple[Template | None, tuple[Slot, ...]]:
    """The template and its slots, or the slots asked by key; 404 errors name what is unknown."""
    if request.template is not None:
        template = library.templates.get(request.template)
        if template is None:
            raise TemplateNotFound(f"no template with key {request.template!r}")
        return template, template.slots
    slots = []
    for key in request.slots or ():
        slot = library.slots.get(key)
        if slot is None:
            raise SlotNotFound(f"no slot with key {key!r}")
        slots.append(slot)
    return None, tuple(slots)


def locale_of(library: Library, requested: str | None) -> str:
    """The requested locale, or the space's default; 422 for a locale the space lacks."""
    if requested is None:
        return library.default_locale
    if requested not in library.locales:
        known = ", ".join(sorted(library.locales))
        raise UnknownLocale(f"locale {requested!r} is not in the space (known: {known})")
    return requested
