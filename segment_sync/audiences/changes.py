"""Engage audience and computed-trait events, read into one `AudienceChange` (pure functions).

Segment Engage tells a destination about a computation in one of two shapes
(segment-docs `src/engage/using-engage-data.md`; examples in ../shared/reference/segment/):

- `identify` with `context.personas.computation_class` and the result as a trait. For an
  audience the trait is boolean, `{"<audience_key>": true}` on entry and `false` on exit; the
  audience key is `context.personas.computation_key`, which is also the trait name.
- `track` "Audience Entered" / "Audience Exited" with `properties.audience_key` (and the same
  boolean under that key), or "Trait Computed" with `properties.trait_key` and its value.

Computed traits (`computation_class` "trait", "computed_trait", "sql_trait", ...) are traits,
never audiences. An audience flag is kept out of `traits`: membership lives in the audience set.

Decisions for the shapes the docs leave open:
- An audience `identify` whose traits do not name `computation_key` (the docs' example uses
  the placeholder `aud_###`) takes every boolean trait as a membership flag and the other
  traits as traits.
- A membership flag that is not a JSON boolean (`"true"`, `1`, `null`), an audience event
  without any flag or key, or a track whose flag contradicts its name ("Audience Entered"
  with `false`) is bad input: `audience_problem` describes it, the webhook rejects the event
  with 400, and `audience_changes` (total, for the consumer) ignores the bad flag.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = [
    "AUDIENCE_ENTERED",
    "AUDIENCE_EXITED",
    "PERSONAS_TRAIT",
    "TRAIT_COMPUTED",
    "AudienceChange",
    "audience_changes",
    "audience_problem",
]

AUDIENCE_ENTERED = "Audience Entered"
AUDIENCE_EXITED = "Audience Exited"
TRAIT_COMPUTED = "Trait Computed"
AUDIENCE_CLASS = "audience"
PERSONAS_TRAIT = "personas"  # the profile trait persona-targeted audiences match (content model)

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class AudienceChange:
    """What one Engage event does to a profile: audiences entered and exited, traits to set."""

    entered: frozenset[str] = frozenset()
    exited: frozenset[str] = frozenset()
    traits: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)

    def apply(self, audiences: frozenset[str] | set[str]) -> frozenset[str]:
        """The audience set after this change."""
        return (frozenset(audiences) - self.exited) | self.entered


@dataclass(frozen=True, slots=True)
class _Reading:
    change: AudienceChange | None
    problem: str | None = None


def audience_changes(event: Mapping[str, Any]) -> AudienceChange | None:
    """The change an Engage event makes, or None when it is not an Engage computation event.

    Never raises on a payload's shape; a bad membership flag is left out of the change
    (see `audience_problem` for the webhook, which rejects such events instead).
    """
    return _read(event).change


def audience_problem(event: Mapping[str, Any]) -> str | None:
    """Why an Engage event is bad input (one readable sentence), or None when it is fine."""
    return _read(event).problem


def _read(event: Mapping[str, Any]) -> _Reading:
    kind = event.get("type")
    personas = _personas(event)
    if kind == "identify" and personas is not None:
        traits = _mapping(event.get("traits"))
        if personas.get("computation_class") == AUDIENCE_CLASS:
            return _audience_identify(traits, personas.get("computation_key"))
        return _Reading(AudienceChange(traits=_frozen(traits)))
    if kind == "track":
        name = event.get("event")
        properties = _mapping(event.get("properties"))
        if name in (AUDIENCE_ENTERED, AUDIENCE_EXITED):
            key = properties.get("audience_key") or (personas or {}).get("computation_key")
            return _audience_track(name == AUDIENCE_ENTERED, key, properties)
        if name == TRAIT_COMPUTED:
            return _trait_track(properties)
    return _Reading(None)


def _audience_identify(traits: Mapping[str, Any], key: Any) -> _Reading:
    if isinstance(key, str) and key in traits:
        flags = {key: traits[key]}
        rest = {name: value for name, value in traits.items() if name != key}
    else:  # the computation key is not a trait name: every boolean trait is a flag
        flags = {name: value for name, value in traits.items() if isinstance(value, bool)}
        rest = {name: value for name, value in traits.items() if name not in flags}
        if not flags:
            return _Reading(
                AudienceChange(traits=_frozen(rest)),
                f"audience identify has no boolean membership trait "
                f"(context.personas.computation_key is {key!r})",
            )
    good = {name: value for name, value in flags.items() if isinstance(value, bool)}
    change = AudienceChange(
        entered=frozenset(name for name, value in good.items() if value),
        exited=frozenset(name for name, value in good.items() if not value),
        traits=_frozen(rest),
    )
    bad = sorted(set(flags) - set(good))
    if bad:
        return _Reading(change, _not_boolean(bad[0], flags[bad[0]]))
    return _Reading(change)


def _audience_track(entered: bool, key: Any, properties: Mapping[str, Any]) -> _Reading:
    name = AUDIENCE_ENTERED if entered else AUDIENCE_EXITED
    if not isinstance(key, str) or not key:
        return _Reading(None, f"{name!r} has no properties.audience_key")
    flag = properties.get(key, entered)
    if not isinstance(flag, bool):
        return _Reading(None, _not_boolean(key, flag))
    if flag is not entered:
        return _Reading(None, f"{name!r} for {key!r} carries {key}={str(flag).lower()}")
    keys = frozenset((key,))
    return _Reading(AudienceChange(entered=keys) if entered else AudienceChange(exited=keys))


def _trait_track(properties: Mapping[str, Any]) -> _Reading:
    key = properties.get("trait_key")
    if not isinstance(key, str) or not key or key not in properties:
        return _Reading(None)
    return _Reading(AudienceChange(traits=_frozen({key: properties[key]})))


def _personas(event: Mapping[str, Any]) -> Mapping[str, Any] | None:
    context = event.get("context")
    personas = context.get("personas") if isinstance(context, Mapping) else None
    if isinstance(personas, Mapping) and personas.get("computation_class"):
        return personas
    return None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else _EMPTY


def _frozen(values: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(values)) if values else _EMPTY


def _not_boolean(key: str, value: Any) -> str:
    shown = "null" if value is None else f"{type(value).__name__} {value!r}"
    return f"audience trait {key!r} must be true or false, not {shown}"
