"""What an editor forces in a preview: audiences, a variant per slot, an experiment arm.

Forced audiences replace audience matching: the visitor is a member of exactly those (every
other audience fails), and the rules decide as usual from there. A forced variant or arm
replaces the slot's decision after the rules ran; a forced variant wins over a forced arm in
the same slot. Unknown keys answer 404, so a typo never looks like "the rules chose this".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from assembly.decisions.outcome import Decision
from assembly.decisions.sequencing import Placed
from assembly.decisions.visitor import Visitor
from assembly.preview.exceptions import PreviewTargetNotFound
from assembly.schemas import PreviewOptions
from integration.library import Library
from integration.model import Arms, Audience, Slot

BASELINE = "baseline"


@dataclass(slots=True)
class ForcedVisitor(Visitor):
    """A visitor who is a member of exactly the `forced` audiences (by key)."""

    forced: frozenset[str] = frozenset()

    def in_audience(self, audience: Audience) -> bool:
        return audience.key in self.forced


def audiences_of(library: Library) -> dict[str, Audience]:
    """Every audience a variant of the library targets, by key."""
    found: dict[str, Audience] = {}
    for slot in library.slots.values():
        for variant in slot.variants:
            for audience in variant.audiences:
                found.setdefault(audience.key, audience)
    return found


def experiments_of(library: Library) -> dict[str, Arms]:
    """Every experiment of the library with its arms (as the first slot that runs it has them)."""
    found: dict[str, Arms] = {}
    for slot in library.slots.values():
        for key, arms in slot.arms.items():
            found.setdefault(key, arms)
    return found


def forced_visitor(visitor: Visitor, library: Library, audiences: list[str] | None) -> Visitor:
    if audiences is None:
        return visitor
    known = audiences_of(library)
    unknown = [key for key in audiences if key not in known]
    if unknown:
        raise PreviewTargetNotFound(f"no audience with key {unknown[0]!r} is targeted")
    state = {f.name: getattr(visitor, f.name) for f in dataclasses.fields(Visitor)}
    return ForcedVisitor(**state, forced=frozenset(audiences))


def force_decisions(
    library: Library, placed: list[Placed], options: PreviewOptions
) -> list[Placed]:
    if not options.variants and not options.arms:
        return placed
    by_slot = {slot.key for slot, _ in placed}
    for slot_key in options.variants:
        if slot_key not in by_slot:
            raise PreviewTargetNotFound(f"slot {slot_key!r} is not on this page")
    arms = _forced_arms(library, options.arms)
    return [(slot, _forced(slot, decision, options.variants, arms)) for slot, decision in placed]


def _forced_arms(library: Library, wanted: Mapping[str, str]) -> dict[str, str]:
    experiments = experiments_of(library)
    for key, label in wanted.items():
        arms = experiments.get(key)
        if arms is None:
            raise PreviewTargetNotFound(f"no experiment with key {key!r}")
        if arms.index(label) < 0:
            raise PreviewTargetNotFound(f"experiment {key!r} has no arm {label!r}")
    return dict(wanted)


def _forced(
    slot: Slot, decision: Decision, variants: Mapping[str, str], arms: Mapping[str, str]
) -> Decision:
    key = variants.get(slot.key)
    if key is not None:
        return _force_variant(slot, key)
    for experiment, label in arms.items():
        slot_arms = slot.arms.get(experiment)
        if slot_arms is not None:
            return _arm(slot_arms, slot_arms.index(label))
    return decision


def _force_variant(slot: Slot, key: str) -> Decision:
    if key == BASELINE:
        return Decision("baseline", "preview: baseline forced")
    variant = next((v for v in slot.variants if v.key == key), None)
    if variant is None:
        raise PreviewTargetNotFound(f"slot {slot.key!r} has no variant {key!r}")
    if variant.experiment is not None:
        arms = slot.arms[variant.experiment.key]
        return _arm(arms, arms.index(key))
    return Decision("variant", f"preview: variant {key} forced", variant)


def _arm(arms: Arms, index: int) -> Decision:
    label = arms.labels[index]
    key = arms.experiment.key
    return Decision(
        "experiment",
        f"preview: experiment {key} arm {label} forced",
        arms.variants[index - 1] if index else None,
        {"key": key, "arm": index, "variant": label},
    )


def slot_choices(slot: Slot) -> Iterator[str]:
    """What the page's variant picker offers for a slot: the baseline, then each variant."""
    yield BASELINE
    for variant in slot.variants:
        yield variant.key
