"""The model artifact: a small versioned JSON document, validated by schema and checksum.

```json
{"format": "microbridge.model/1", "version": 3, "trainedAt": 1764662400.0,
 "goal": "Order Completed", "attributionSeconds": 86400,
 "features": [{"path": "signals.cartAbandoned", "kind": "bool"}, ...],
 "slots": {"home.hero": {"auc": 0.71, "exposures": 5000,
           "variants": {"hero-cart": {"intercept": -2.1, "weights": [1.2, ...],
                                      "exposures": 1700, "conversions": 210}}}},
 "checksum": "sha256:<hex of the canonical JSON of everything else>"}
```

A variant's score is the logistic `1 / (1 + exp(-(intercept + weights · x)))`: the predicted
chance that a visitor with features `x` converts after seeing it. `weights` has one number per
feature. The checksum is over the document without `checksum`, serialized with sorted keys
(orjson `OPT_SORT_KEYS`), so a truncated or edited artifact is refused.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from assembly.learning.exceptions import ModelInvalid
from assembly.learning.features import FeatureKind, FeatureSpec

FORMAT = "microbridge.model/1"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureDoc(_Strict):
    path: str = Field(min_length=1)
    kind: FeatureKind
    value: str | None = None


class VariantDoc(_Strict):
    intercept: float
    weights: tuple[float, ...]
    exposures: int = Field(ge=0)
    conversions: int = Field(ge=0)

    @field_validator("weights")
    @classmethod
    def _finite(cls, weights: tuple[float, ...]) -> tuple[float, ...]:
        if not all(math.isfinite(w) for w in weights):
            raise ValueError("weights must be finite")
        return weights


class SlotDoc(_Strict):
    auc: float | None = None
    exposures: int = Field(ge=0)
    variants: dict[str, VariantDoc]


class ArtifactDoc(_Strict):
    format: Literal["microbridge.model/1"]
    version: int = Field(ge=1)
    trainedAt: float
    goal: str
    attributionSeconds: float = Field(gt=0)
    features: tuple[FeatureDoc, ...]
    slots: dict[str, SlotDoc]
    checksum: str

    def specs(self) -> list[FeatureSpec]:
        return [FeatureSpec(f.path, f.kind, f.value) for f in self.features]


def checksum(body: dict[str, Any]) -> str:
    data = {k: v for k, v in body.items() if k != "checksum"}
    return "sha256:" + hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()


def encode(body: dict[str, Any]) -> bytes:
    """The artifact with its checksum, as stored (the body is validated first)."""
    sealed = {**body, "format": FORMAT, "checksum": ""}
    sealed["checksum"] = checksum(sealed)
    decode(orjson.dumps(sealed))
    return orjson.dumps(sealed)


def decode(raw: bytes) -> ArtifactDoc:
    """The validated artifact; `ModelInvalid` says what is wrong with it."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ModelInvalid(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ModelInvalid("not a JSON object")
    try:
        doc = ArtifactDoc.model_validate(body)
    except ValidationError as exc:
        raise ModelInvalid(
            f"schema: {exc.errors()[0]['msg']} at {exc.errors()[0]['loc']}"
        ) from None
    if checksum(body) != doc.checksum:
        raise ModelInvalid("checksum mismatch")
    width = len(doc.features)
    for slot_key, slot in doc.slots.items():
        for variant_key, variant in slot.variants.items():
            if len(variant.weights) != width:
                raise ModelInvalid(
                    f"{slot_key}/{variant_key}: {len(variant.weights)} weights, {width} features"
                )
    return doc
