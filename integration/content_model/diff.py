"""What applying the model would change in a space: pure functions over CMA JSON.

`diff_type` compares one `ModelType` with what the space holds (`Current`) and returns the
changes (content type attributes, fields added or changed, validations, help texts, widgets,
field order, fields removed, activation) and the refusals: a field the model no longer has that
still holds data in some entry, and a field whose type would change (Contentful cannot).
A field the model no longer has and that no entry holds a value for is removed the way
Contentful requires: omitted and activated, then deleted and activated.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from integration.content_model.definition import ModelType

__all__ = [
    "Change",
    "ChangeKind",
    "Current",
    "Refusal",
    "TypeDiff",
    "diff_type",
    "extra_fields",
    "merge_controls",
]

JSON = Mapping[str, Any]

_FIELD_DEFAULTS: dict[str, Any] = {
    "localized": False,
    "required": False,
    "disabled": False,
    "omitted": False,
    "validations": [],
}
_TYPE_ATTRIBUTES = ("name", "description", "displayField")
# What Contentful cannot change on an existing field.
_IMMUTABLE = ("type", "linkType")


class ChangeKind(StrEnum):
    CREATE_TYPE = "create type"
    TYPE_ATTRIBUTE = "type attribute"
    ADD_FIELD = "add field"
    FIELD_ATTRIBUTE = "field attribute"
    VALIDATIONS = "validations"
    HELP_TEXT = "help text"
    WIDGET = "widget"
    FIELD_ORDER = "field order"
    REMOVE_FIELD = "remove field"
    ACTIVATE = "activate"


@dataclass(frozen=True, slots=True)
class Change:
    type_id: str
    kind: ChangeKind
    field_id: str | None = None
    attribute: str | None = None
    before: Any = None
    after: Any = None

    def line(self) -> str:
        """One line of the diff: `+` adds, `~` changes, `-` removes, `*` activates."""
        where = self.type_id + (f".{self.field_id}" if self.field_id else "")
        match self.kind:
            case ChangeKind.CREATE_TYPE:
                return f"+ {where}: new content type ({self.after} fields)"
            case ChangeKind.ADD_FIELD:
                return f"+ {where}: new field ({self.after})"
            case ChangeKind.REMOVE_FIELD:
                return f"- {where}: no entry holds a value; omitted, then deleted"
            case ChangeKind.ACTIVATE:
                return f"* {where}: activate (the space has unpublished changes)"
        label = self.attribute or self.kind.value
        return f"~ {where} {label}: {_show(self.before)} -> {_show(self.after)}"


@dataclass(frozen=True, slots=True)
class Refusal:
    type_id: str
    field_id: str
    reason: str

    def line(self) -> str:
        return f"! {self.type_id}.{self.field_id}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Current:
    """What the space holds for one type: CMA JSON of the content type (None: absent), whether
    its latest version is active, its editor controls (None: no editor interface yet), and for
    fields the model lacks, how many entries hold a value."""

    content_type: JSON | None
    active: bool = True
    controls: Sequence[JSON] | None = None
    entries_with_value: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TypeDiff:
    type_id: str
    changes: tuple[Change, ...] = ()
    refusals: tuple[Refusal, ...] = ()
    removed: tuple[JSON, ...] = ()

    @property
    def content_type_changed(self) -> bool:
        """Whether the content type itself (not only its editor interface) must be written."""
        editor_only = (ChangeKind.HELP_TEXT, ChangeKind.WIDGET, ChangeKind.ACTIVATE)
        return any(c.kind not in editor_only for c in self.changes)


def extra_fields(model: ModelType, content_type: JSON | None) -> list[JSON]:
    """Fields of the space's content type that the model does not have."""
    if content_type is None:
        return []
    wanted = {f["id"] for f in model.fields}
    return [f for f in content_type.get("fields", []) if f.get("id") not in wanted]


def diff_type(model: ModelType, current: Current) -> TypeDiff:
    ct = current.content_type
    if ct is None:
        created = Change(model.id, ChangeKind.CREATE_TYPE, after=len(model.fields))
        added = [_added(model.id, f) for f in model.fields]
        return TypeDiff(model.id, (created, *added))
    changes = [*_type_changes(model, ct), *_field_changes(model, ct)]
    refusals = _type_refusals(model, ct)
    removed: list[JSON] = []
    for extra in extra_fields(model, ct):
        count = current.entries_with_value.get(str(extra["id"]), 0)
        if count:
            refusals.append(_holds_data(model.id, str(extra["id"]), count))
        else:
            removed.append(extra)
            changes.append(Change(model.id, ChangeKind.REMOVE_FIELD, str(extra["id"])))
    changes += _control_changes(model, current.controls or [])
    if not current.active and not any(_writes_type(c) for c in changes):
        changes.append(Change(model.id, ChangeKind.ACTIVATE))
    return TypeDiff(model.id, tuple(changes), tuple(refusals), tuple(removed))


def merge_controls(current: Sequence[JSON], model: Sequence[JSON]) -> list[dict[str, Any]]:
    """The space's controls with the model's widget and settings laid over, field by field;
    controls of other fields are kept, and the model's missing ones appended."""
    wanted = {c["fieldId"]: c for c in model}
    merged: list[dict[str, Any]] = []
    for control in current:
        ours = wanted.pop(control.get("fieldId"), None)
        merged.append(dict(control) if ours is None else _laid_over(control, ours))
    merged += [_laid_over({"fieldId": c["fieldId"]}, c) for c in wanted.values()]
    return merged


def _laid_over(control: JSON, ours: JSON) -> dict[str, Any]:
    settings = {**control.get("settings", {}), **ours.get("settings", {})}
    result = {**control, **{k: v for k, v in ours.items() if k != "settings"}}
    return result | ({"settings": settings} if settings else {})


def _writes_type(change: Change) -> bool:
    return change.kind not in (ChangeKind.HELP_TEXT, ChangeKind.WIDGET)


def _added(type_id: str, wanted: JSON) -> Change:
    return Change(type_id, ChangeKind.ADD_FIELD, str(wanted["id"]), after=_type_label(wanted))


def _type_changes(model: ModelType, ct: JSON) -> list[Change]:
    return [
        Change(model.id, ChangeKind.TYPE_ATTRIBUTE, attribute=key, before=ct.get(key), after=want)
        for key in _TYPE_ATTRIBUTES
        if (want := model.body.get(key)) is not None and (ct.get(key) or "") != want
    ]


def _field_changes(model: ModelType, ct: JSON) -> list[Change]:
    have = {f.get("id"): f for f in ct.get("fields", [])}
    changes: list[Change] = []
    for wanted in model.fields:
        existing = have.get(wanted["id"])
        if existing is None:
            changes.append(_added(model.id, wanted))
        elif not _type_differs(wanted, existing):
            changes += _attribute_changes(model.id, wanted, existing)
    order = [
        f["id"] for f in ct.get("fields", []) if f.get("id") in {w["id"] for w in model.fields}
    ]
    wanted_order = [f["id"] for f in model.fields if f["id"] in have]
    if order != wanted_order:
        changes.append(Change(model.id, ChangeKind.FIELD_ORDER, before=order, after=wanted_order))
    return changes


def _attribute_changes(type_id: str, wanted: JSON, existing: JSON) -> list[Change]:
    want, have = _normal(wanted), _normal(existing)
    return [
        Change(
            type_id,
            ChangeKind.VALIDATIONS if key == "validations" else ChangeKind.FIELD_ATTRIBUTE,
            str(wanted["id"]),
            attribute=key,
            before=have.get(key),
            after=want.get(key),
        )
        for key in sorted(set(want) | set(have))
        if want.get(key) != have.get(key)
    ]


def _type_refusals(model: ModelType, ct: JSON) -> list[Refusal]:
    have = {f.get("id"): f for f in ct.get("fields", [])}
    return [
        Refusal(
            model.id,
            str(wanted["id"]),
            f"the space has it as {_type_label(have[wanted['id']])}, the model as "
            f"{_type_label(wanted)}; Contentful cannot change a field's type. Give the model's "
            "field a new id (and move the values), or keep the space's type in the model.",
        )
        for wanted in model.fields
        if wanted["id"] in have and _type_differs(wanted, have[wanted["id"]])
    ]


def _holds_data(type_id: str, field_id: str, count: int) -> Refusal:
    entries = "1 entry holds" if count == 1 else f"{count} entries hold"
    return Refusal(
        type_id,
        field_id,
        f"the model no longer has this field, but {entries} a value, so it is not deleted. "
        "Put it back in templates/content-model.json, or clear it in those entries and run "
        "again, or delete it in Contentful's web app (omit it: 'Disable in response', save; "
        "then 'Delete' it, save), which discards the values.",
    )


def _control_changes(model: ModelType, current: Sequence[JSON]) -> list[Change]:
    have = {c.get("fieldId"): c for c in current}
    changes: list[Change] = []
    for ours in model.controls:
        field_id = str(ours["fieldId"])
        before = have.get(field_id, {})
        after = _laid_over(before, ours)
        before_help = before.get("settings", {}).get("helpText")
        if after.get("settings", {}).get("helpText") != before_help:
            help_text = after["settings"]["helpText"]
            changes.append(
                Change(
                    model.id, ChangeKind.HELP_TEXT, field_id, "help text", before_help, help_text
                )
            )
        if _appearance(after) != _appearance(before):
            changes.append(
                Change(
                    model.id, ChangeKind.WIDGET, field_id, "widget", _widget(before), _widget(after)
                )
            )
    return changes


def _appearance(control: JSON) -> tuple[Any, ...]:
    settings = {k: v for k, v in control.get("settings", {}).items() if k != "helpText"}
    return control.get("widgetId"), control.get("widgetNamespace"), settings


def _widget(control: JSON) -> str | None:
    widget = control.get("widgetId")
    if widget is None:
        return None
    settings = {k: v for k, v in control.get("settings", {}).items() if k != "helpText"}
    return f"{control.get('widgetNamespace', 'builtin')}:{widget}" + (
        f" {json.dumps(settings, sort_keys=True)}" if settings else ""
    )


def _type_differs(wanted: JSON, existing: JSON) -> bool:
    if any(wanted.get(k) != existing.get(k) for k in _IMMUTABLE):
        return True
    items_wanted, items_have = wanted.get("items") or {}, existing.get("items") or {}
    return any(items_wanted.get(k) != items_have.get(k) for k in _IMMUTABLE)


def _normal(raw: JSON) -> dict[str, Any]:
    """A field as compared: Contentful's defaults filled in, unset values and `id` left out."""
    result = {**_FIELD_DEFAULTS, **raw}
    if "items" in result:
        result["items"] = {"validations": [], **result["items"]}
    return {k: v for k, v in result.items() if k not in ("id", "deleted") and v is not None}


def _type_label(raw: JSON) -> str:
    kind = str(raw.get("type"))
    if kind == "Link":
        return f"Link {raw.get('linkType')}"
    if kind == "Array":
        items = raw.get("items") or {}
        inner = items.get("type")
        return f"Array of {inner}" + (f" {items.get('linkType')}" if inner == "Link" else "")
    return kind


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
