"""A contextual bandit's stored parameters: the JSON in Redis, checked before it is served.

`<p>:decisions:bandit:contextual` (hash, experiment key -> JSON) holds, per experiment:
`version`, `at`, `floor`, `scale`, `features` (the feature specs, as a ranking-model artifact
lists them), `arms` (each: `label`, `mean`, `cov`, `exposures`, `conversions`) and `segments`
(the per-segment allocation and regret estimate of the fit, for results). It is written with
the plain bandit's weights and bumps the same version counter, so the replicas'
`AllocationWatcher` loads both.

`compile_policy` refuses (None) a document that is not what it says: unreadable JSON, an
unknown feature kind, a mean or covariance of the wrong size, a non-finite number, or arms other
than the experiment's; the experiment then runs on its plain bandit weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import orjson

from assembly.experiments.contextual import ArmModel, Policy
from assembly.learning.features import Encoder, FeatureSpec

_KINDS = ("bool", "number", "category", "audience")


class BrokenParameters(ValueError):
    """The stored parameters cannot be served (the reason is the message)."""


def encode_params(
    *,
    version: int,
    at: float,
    specs: Sequence[FeatureSpec],
    arms: Sequence[ArmModel],
    segments: Sequence[dict[str, Any]],
    floor: float,
    scale: float,
    extra: dict[str, Any] | None = None,
) -> bytes:
    return orjson.dumps(
        {
            "version": version,
            "at": at,
            "features": [s.to_json() for s in specs],
            "arms": [a.to_json() for a in arms],
            "segments": list(segments),
            "floor": floor,
            "scale": scale,
            **(extra or {}),
        }
    )


def decode_params(raw: bytes | str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def _spec(doc: Any) -> FeatureSpec:
    if not isinstance(doc, dict) or doc.get("kind") not in _KINDS:
        raise BrokenParameters(f"feature {doc!r} has no known kind")
    path, value = doc.get("path"), doc.get("value")
    if not isinstance(path, str) or not path:
        raise BrokenParameters(f"feature {doc!r} has no path")
    return FeatureSpec(path, doc["kind"], None if value is None else str(value))


def _finite(values: Any, size: int, what: str) -> tuple[float, ...]:
    if not isinstance(values, list) or len(values) != size:
        raise BrokenParameters(f"{what} has not {size} numbers")
    out = tuple(float(v) for v in values)
    if not all(math.isfinite(v) for v in out):
        raise BrokenParameters(f"{what} is not finite")
    return out


def _arm(doc: Any, size: int) -> ArmModel:
    if not isinstance(doc, dict) or not isinstance(doc.get("label"), str):
        raise BrokenParameters("an arm has no label")
    label = doc["label"]
    mean = _finite(doc.get("mean"), size, f"arm {label} mean")
    rows = doc.get("cov")
    if not isinstance(rows, list) or len(rows) != size:
        raise BrokenParameters(f"arm {label} covariance has not {size} rows")
    cov = tuple(_finite(r, size, f"arm {label} covariance row") for r in rows)
    return ArmModel(label, mean, cov, int(doc.get("exposures") or 0))


def policy_of(key: str, doc: dict[str, Any]) -> Policy:
    """The policy the document describes; BrokenParameters when it cannot be served."""
    try:
        specs = [_spec(s) for s in doc["features"]]
        size = len(specs) + 1
        arms = [_arm(a, size) for a in doc["arms"]]
        version = int(doc["version"])
        floor, scale = float(doc["floor"]), float(doc["scale"])
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, BrokenParameters):
            raise
        raise BrokenParameters(f"unreadable: {exc!r}") from exc
    if not arms:
        raise BrokenParameters("no arms")
    if not (0 <= floor < 1 and 0 <= scale < math.inf):
        raise BrokenParameters(f"floor {floor} or scale {scale} out of range")
    return Policy(key, version, Encoder(specs), arms, floor, scale)


def compile_policy(key: str, raw: bytes | str | None, labels: Sequence[str] | None) -> Policy:
    """`policy_of` on stored bytes, checked against the experiment's arms when known."""
    doc = decode_params(raw)
    if doc is None:
        raise BrokenParameters("not a JSON object")
    policy = policy_of(key, doc)
    if labels is not None and set(policy.labels) != set(labels):
        raise BrokenParameters(f"arms {sorted(policy.labels)} are not {sorted(labels)}")
    return policy
