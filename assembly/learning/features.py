"""The fixed feature vector of a model: what the engine already reads about a visitor.

A feature is one number taken from the visitor as a decision sees it (`assembly.visitor`):

| kind | path | value |
| --- | --- | --- |
| `bool` | `signals.cartAbandoned` | 1 when the leaf is `true`, else 0 |
| `number` | `signals.visits`, `signals.engagement.video` | `log1p(max(0, x))`, 0 when missing |
| `category` | `traits.plan` with `value` `pro` | 1 when the leaf equals `value`, else 0 |
| `audience` | `audiences:vip` | 1 when the visitor is in the CDP audience `vip` |

Paths are the condition dialect's (one level of nesting under a signal, as `insights.table`
reads them), so training (on logged decisions) and serving (on a live visitor) read the same
leaves with the same code: `Encoder.encode`, a sparse `(index, value)` list, zeros left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from assembly.visitor import Visitor

FeatureKind = Literal["bool", "number", "category", "audience"]
Sparse = list[tuple[int, float]]


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    path: str
    kind: FeatureKind
    value: str | None = None  # the category's value

    @property
    def name(self) -> str:
        return f"{self.path}={self.value}" if self.kind == "category" else self.path

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "kind": self.kind}
        if self.value is not None:
            out["value"] = self.value
        return out


Reader = Callable[[Visitor], float]


def _leaf(doc: Mapping[str, Any], path: str) -> Any:
    """`signals.a` or `signals.a.b` (`traits.*` likewise) from the visitor's document."""
    parts = path.split(".")
    node: Any = doc.get(parts[0])
    for part in parts[1:]:
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def _reader(spec: FeatureSpec) -> Reader:
    if spec.kind == "audience":
        key = spec.path.split(":", 1)[1]
        return lambda v: 1.0 if key in v.audiences else 0.0
    path = spec.path
    if spec.kind == "bool":
        return lambda v: 1.0 if _leaf(v.doc, path) is True else 0.0
    if spec.kind == "category":
        wanted = spec.value
        return lambda v: 1.0 if _leaf(v.doc, path) == wanted else 0.0
    return lambda v: _number(_leaf(v.doc, path))


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    if not math.isfinite(value) or value <= 0:
        return 0.0
    return math.log1p(value)


class Encoder:
    """Reads a visitor's feature vector: one compiled reader per feature."""

    def __init__(self, specs: Sequence[FeatureSpec]) -> None:
        self.specs = tuple(specs)
        self._readers = [(i, _reader(s)) for i, s in enumerate(self.specs)]

    def encode(self, visitor: Visitor) -> Sparse:
        out: Sparse = []
        for index, read in self._readers:
            value = read(visitor)
            if value:
                out.append((index, value))
        return out

    def dense(self, visitor: Visitor) -> list[float]:
        row = [0.0] * len(self.specs)
        for index, value in self.encode(visitor):
            row[index] = value
        return row
