"""The fixed feature vector of a model: what the engine already reads about a visitor.

A feature is one number taken from the visitor as a decision sees it (`assembly.decisions.visitor`):

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from assembly.decisions.visitor import Visitor

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


_BOOL, _NUMBER, _CATEGORY = 0, 1, 2
_KINDS = {"bool": _BOOL, "number": _NUMBER, "category": _CATEGORY}
Leaf = tuple[int, int, tuple[str, ...], str | None]  # index, kind, path under the top, value


_INF = math.inf
_log1p = math.log1p


class Encoder:
    """Reads a visitor's feature vector: audiences by one set lookup each, signal and trait
    leaves grouped by their top-level part, each by its pre-split path."""

    def __init__(self, specs: Sequence[FeatureSpec]) -> None:
        self.specs = tuple(specs)
        self._audiences = [
            (i, s.path.split(":", 1)[1]) for i, s in enumerate(self.specs) if s.kind == "audience"
        ]
        groups: dict[str, list[Leaf]] = {}
        for i, spec in enumerate(self.specs):
            if spec.kind != "audience":
                top, *rest = spec.path.split(".")
                groups.setdefault(top, []).append((i, _KINDS[spec.kind], tuple(rest), spec.value))
        self._groups = list(groups.items())

    def encode(self, visitor: Visitor) -> Sparse:
        """The sparse vector, zeros left out: a leaf is found by its path through mappings
        (anything else on the way: missing); a number feature is `log1p(x)` for an int or
        float above 0 and finite, else 0 (bool is neither). Runs once per page view with a
        model in force, so it is one flat loop."""
        out: Sparse = []
        audiences = visitor.audiences
        if audiences:
            for i, key in self._audiences:
                if key in audiences:
                    out.append((i, 1.0))
        doc = visitor.doc
        for top, leaves in self._groups:
            base = doc.get(top)
            if not base:
                continue
            for index, kind, parts, wanted in leaves:
                leaf = base
                for part in parts:
                    if type(leaf) is dict or isinstance(leaf, Mapping):
                        leaf = leaf.get(part)
                    else:
                        leaf = None
                        break
                if kind == _NUMBER:
                    number = type(leaf)
                    if (number is int or number is float) and leaf > 0 and leaf != _INF:
                        out.append((index, _log1p(leaf)))
                elif (leaf is True) if kind == _BOOL else (leaf == wanted):
                    out.append((index, 1.0))
        return out

    def dense(self, visitor: Visitor) -> list[float]:
        row = [0.0] * len(self.specs)
        for index, value in self.encode(visitor):
            row[index] = value
        return row
