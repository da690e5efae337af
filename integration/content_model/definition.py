"""The content model we apply: `templates/content-model.json` read into typed pieces.

The file holds Contentful's export format: `contentTypes` (content type bodies with `sys.id`)
and `editorInterfaces` (`controls` per field: widget and `settings.helpText`), plus
`demoContentTypes` that only the demo space uses and `model apply` leaves alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from integration.content_model.exceptions import ContentModelInvalid

__all__ = ["CONTENT_MODEL", "MODEL_TYPES", "ModelType", "load_model"]

CONTENT_MODEL = Path(__file__).resolve().parents[2] / "templates" / "content-model.json"
MODEL_TYPES = ("mbAudience", "mbExperiment", "mbVariant", "mbSlot", "mbTemplate", "mbSettings")
_BODY_KEYS = ("name", "description", "displayField", "fields")


@dataclass(frozen=True, slots=True)
class ModelType:
    """One content type as the model wants it: its CMA body and its editor controls."""

    id: str
    body: Mapping[str, Any]
    controls: tuple[Mapping[str, Any], ...]

    @property
    def fields(self) -> Sequence[Mapping[str, Any]]:
        fields: Sequence[Mapping[str, Any]] = self.body["fields"]
        return fields


def load_model(path: Path = CONTENT_MODEL) -> tuple[ModelType, ...]:
    """The six `mb*` types of the model file, in `MODEL_TYPES` order."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        types = {ct["sys"]["id"]: ct for ct in document["contentTypes"]}
        controls = {
            ei["sys"]["contentType"]["sys"]["id"]: ei["controls"]
            for ei in document.get("editorInterfaces", [])
        }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ContentModelInvalid(f"cannot read the content model {path}: {exc!r}") from exc
    missing = [type_id for type_id in MODEL_TYPES if type_id not in types]
    if missing:
        raise ContentModelInvalid(f"{path} lacks content type(s) {', '.join(missing)}")
    return tuple(_model_type(types[t], controls.get(t, []), path) for t in MODEL_TYPES)


def _model_type(raw: Mapping[str, Any], controls: Sequence[Any], path: Path) -> ModelType:
    type_id = str(raw["sys"]["id"])
    body = {key: raw[key] for key in _BODY_KEYS if key in raw}
    fields = body.get("fields")
    if not isinstance(fields, list) or not all(_is_field(f) for f in fields):
        raise ContentModelInvalid(f"{path}: {type_id} needs fields with an id, name and type")
    field_ids = [f["id"] for f in fields]
    if len(set(field_ids)) != len(field_ids):
        raise ContentModelInvalid(f"{path}: {type_id} names a field twice")
    strays = [c.get("fieldId") for c in controls if c.get("fieldId") not in field_ids]
    if strays:
        raise ContentModelInvalid(f"{path}: {type_id} has controls for unknown fields {strays}")
    return ModelType(type_id, body, tuple(controls))


def _is_field(field: Any) -> bool:
    return isinstance(field, dict) and all(isinstance(field.get(k), str) for k in _FIELD_KEYS)


_FIELD_KEYS = ("id", "name", "type")
