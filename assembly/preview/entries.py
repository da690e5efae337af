"""Which templates use an entry: what Contentful's "Open preview" button leads to.

An entry is used by a template when it is the template, one of its slots, a slot's baseline,
a variant of a slot (or the entry a variant shows), an audience a variant targets, or an
experiment a variant is an arm of. The link pre-selects what the entry is about: a variant is
forced in its slot, an audience is forced for the visitor.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from integration.library import Library
from integration.model import Slot, Template


@dataclass(frozen=True, slots=True)
class Use:
    """A template that uses the entry, how, and what the preview should pre-select."""

    template: str
    how: str
    params: dict[str, str] = field(default_factory=dict)


def templates_using(library: Library, entry_id: str) -> list[Use]:
    """One `Use` per template (the first way it uses the entry), in template key order."""
    uses: dict[str, Use] = {}
    for key in sorted(library.templates):
        template = library.templates[key]
        use = next(_uses(template, entry_id), None)
        if use is not None:
            uses[key] = use
    return list(uses.values())


def _uses(template: Template, entry_id: str) -> Iterator[Use]:
    key = template.key
    if template.id == entry_id:
        yield Use(key, f"the template {key}")
    for slot in template.slots:
        yield from _slot_uses(key, slot, entry_id)


def _slot_uses(template: str, slot: Slot, entry_id: str) -> Iterator[Use]:
    if slot.id == entry_id:
        yield Use(template, f"slot {slot.key}")
    if slot.baseline_id == entry_id:
        yield Use(template, f"baseline of slot {slot.key}", {"variant": f"{slot.key}:baseline"})
    for variant in slot.variants:
        forced = {"variant": f"{slot.key}:{variant.key}"}
        if entry_id in (variant.id, variant.entry_id):
            yield Use(template, f"variant {variant.key} of slot {slot.key}", forced)
        for audience in variant.audiences:
            if audience.id == entry_id:
                yield Use(template, f"audience {audience.key}", {"audience": audience.key})
        if variant.experiment is not None and variant.experiment.id == entry_id:
            yield Use(template, f"experiment {variant.experiment.key} in slot {slot.key}")
