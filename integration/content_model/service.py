"""Plan and apply the content model in a space, one content type at a time.

`plan` reads each `mb*` type (content type, editor interface, and for fields the model lacks,
how many entries hold a value) and diffs it with the model; it writes nothing. `apply` refuses
a plan with refusals before writing anything, then brings each type to the model in one unit
under the retry policy: read, diff, write the content type (removing empty fields in
Contentful's two steps), activate it, then lay the model's widgets and help texts over its
editor interface. A 409 (someone else wrote it meanwhile) or a 429 repeats the unit from the
read, so it never writes over a version it has not seen; a type already like the model is not
written at all, which makes a second run a no-op.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import structlog

from integration.content_model.client import ManagementClient, is_active
from integration.content_model.definition import ModelType
from integration.content_model.diff import (
    Change,
    Current,
    Refusal,
    TypeDiff,
    diff_type,
    extra_fields,
    merge_controls,
)
from integration.content_model.exceptions import ModelApplyRefused
from integration.exceptions import ContentfulError

__all__ = ["Plan", "apply", "plan", "refused"]

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class Plan:
    diffs: tuple[TypeDiff, ...]

    @property
    def changes(self) -> list[Change]:
        return [change for diff in self.diffs for change in diff.changes]

    @property
    def refusals(self) -> list[Refusal]:
        return [refusal for diff in self.diffs for refusal in diff.refusals]

    def lines(self) -> list[str]:
        lines = [change.line() for diff in self.diffs for change in diff.changes]
        return lines + [refusal.line() for refusal in self.refusals]


@dataclass(frozen=True, slots=True)
class _Remote:
    content_type: Any | None
    current: Current


def plan(client: ManagementClient, model: Sequence[ModelType]) -> Plan:
    """What applying `model` would change; reads only."""
    diffs = [client.run(f"read {t.id}", partial(_diff, client, t)) for t in model]
    return Plan(tuple(diffs))


def apply(client: ManagementClient, model: Sequence[ModelType], planned: Plan) -> Plan:
    """Apply `model`; refuses (writing nothing) when `planned` has refusals. Returns what was
    changed, as read just before each type was written."""
    if planned.refusals:
        raise ModelApplyRefused(f"{refused(planned.refusals)}; nothing was changed")
    applied = [client.run(f"apply {t.id}", partial(_apply_type, client, t)) for t in model]
    return Plan(tuple(applied))


def _diff(client: ManagementClient, model: ModelType) -> TypeDiff:
    return diff_type(model, _read(client, model).current)


def _read(client: ManagementClient, model: ModelType) -> _Remote:
    content_type = client.content_type(model.id)
    if content_type is None:
        return _Remote(None, Current(None))
    raw: Mapping[str, Any] = content_type.raw
    counts = {
        str(f["id"]): client.entries_with_value(model.id, str(f["id"]))
        for f in extra_fields(model, raw)
    }
    editor = client.editor_interface(model.id)
    controls = None if editor is None else editor.raw.get("controls", [])
    return _Remote(content_type, Current(raw, is_active(content_type), controls, counts))


def _apply_type(client: ManagementClient, model: ModelType) -> TypeDiff:
    remote = _read(client, model)
    diff = diff_type(model, remote.current)
    if diff.refusals:  # the space changed since the plan was shown
        raise ModelApplyRefused(
            f"{model.id} changed since the plan was read: {refused(diff.refusals)}"
        )
    if not diff.changes:
        return diff
    content_type = _write_type(client, model, remote.content_type, diff)
    if not is_active(content_type):
        client.activate(content_type)
    _write_controls(client, model)
    log.info("content_model.type_applied", type=model.id, changes=len(diff.changes))
    return diff


def _write_type(
    client: ManagementClient, model: ModelType, content_type: Any, diff: TypeDiff
) -> Any:
    if content_type is None:
        return client.create_content_type(model.id, model.body)
    if not diff.content_type_changed:
        return content_type
    if not diff.removed:
        return client.update_content_type(content_type, model.body)
    # Contentful deletes a field only once it is omitted in the active version.
    omitted = client.update_content_type(content_type, _with(model, diff.removed, "omitted"))
    client.activate(omitted)
    return client.update_content_type(omitted, _with(model, diff.removed, "deleted"))


def _with(model: ModelType, removed: Sequence[Mapping[str, Any]], flag: str) -> dict[str, Any]:
    """The model's body, with the removed fields kept at the end and `flag` set on them."""
    fields = [*model.fields, *({**f, flag: True} for f in removed)]
    return {**model.body, "fields": fields}


def _write_controls(client: ManagementClient, model: ModelType) -> None:
    editor = client.editor_interface(model.id)
    if editor is None:
        raise ContentfulError(f"Contentful has no editor interface for {model.id} once active")
    controls = editor.raw.get("controls", [])
    merged = merge_controls(controls, model.controls)
    if merged != controls:
        client.update_editor_interface(editor, merged)


def refused(refusals: Sequence[Refusal]) -> str:
    fields = ", ".join(f"{r.type_id}.{r.field_id}" for r in refusals)
    return f"refused {fields} (see the lines marked '!')"
