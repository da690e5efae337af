"""This replica's compiled library as JSON for operators (`GET /admin/library`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from integration.library import Library
from integration.model import Arms, Audience, Slot, Template, Variant


def library_json(library: Library) -> dict[str, Any]:
    """Templates, slots, variants and experiments, each listed once, in a stable order."""
    variants: dict[str, Variant] = {}
    experiments: dict[str, dict[str, Any]] = {}
    for slot in library.slots.values():
        for variant in slot.variants:
            variants.setdefault(variant.key, variant)
        for arms in slot.arms.values():
            experiments.setdefault(arms.experiment.key, _experiment(arms, []))["slots"].append(
                _arms(slot, arms)
            )
    return {
        "version": library.version,
        "builtAt": library.built_at,
        "defaultLocale": library.default_locale,
        "locales": sorted(library.locales),
        "killSwitch": library.kill_switch,
        "templates": [_template(t) for t in library.templates.values()],
        "slots": [_slot(s) for s in library.slots.values()],
        "variants": [_variant(v) for v in variants.values()],
        "experiments": list(experiments.values()),
        "issues": [i.to_json() for i in library.issues],
    }


def _template(template: Template) -> dict[str, Any]:
    return {
        "key": template.key,
        "id": template.id,
        "slots": [s.key for s in template.slots],
        "sequencing": template.sequencing,
        "maxPersonalized": template.max_personalized,
        "killSwitch": template.kill_switch,
    }


def _slot(slot: Slot) -> dict[str, Any]:
    listed = slot.listed or tuple(v.key for v in slot.variants)
    return {
        "key": slot.key,
        "id": slot.id,
        "baseline": slot.baseline_id,
        "variants": list(listed),
        "ruleOrder": [v.key for v in slot.variants],
        "category": slot.category,
        "pinned": slot.pinned,
        "killSwitch": slot.kill_switch,
    }


def _variant(variant: Variant) -> dict[str, Any]:
    cap = variant.frequency_cap
    return {
        "key": variant.key,
        "id": variant.id,
        "entry": variant.entry_id,
        "audiences": [_audience(a) for a in variant.audiences],
        "conditions": variant.condition is not None,
        "experiment": variant.experiment.key if variant.experiment else None,
        "priority": variant.priority,
        "weight": variant.weight,
        "rollout": variant.rollout,
        "schedule": {"startAt": _iso(variant.start_at), "endAt": _iso(variant.end_at)},
        "frequencyCap": {"max": cap.max, "per": cap.per} if cap else None,
        "enabled": variant.enabled,
        "updatedAt": variant.updated_at or None,
    }


def _audience(audience: Audience) -> dict[str, Any]:
    return {
        "key": audience.key,
        "segments": sorted(audience.segments),
        "personas": sorted(audience.personas),
        "conditions": audience.condition is not None,
        "maxAgeSeconds": audience.max_age_seconds,
    }


def _experiment(arms: Arms, slots: list[dict[str, Any]]) -> dict[str, Any]:
    experiment = arms.experiment
    return {
        "key": experiment.key,
        "id": experiment.id,
        "status": experiment.status,
        "coverage": experiment.coverage,
        "seed": experiment.seed,
        "hashAttribute": experiment.hash_attribute,
        "namespace": (
            {
                "id": experiment.namespace.id,
                "range": [experiment.namespace.start, experiment.namespace.end],
            }
            if experiment.namespace
            else None
        ),
        "goalEvent": experiment.goal_event,
        "winner": experiment.winner,
        "slots": slots,
    }


def _arms(slot: Slot, arms: Arms) -> dict[str, Any]:
    """The experiment's arms in one slot, in list order, with the weights bucketing uses."""
    return {
        "slot": slot.key,
        "arms": list(arms.labels),
        "weights": list(arms.weights),
        "problem": arms.problem,
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
