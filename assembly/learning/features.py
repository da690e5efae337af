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
from collections.abc import Callable, Mapping, Sequence
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


def _descend(leaf: Any, parts: tuple[str, ...]) -> Any:
    for part in parts:
        if type(leaf) is dict or (leaf is not None and isinstance(leaf, Mapping)):
            leaf = leaf.get(part)
        else:
            return None
    return leaf


def _compiled(
    audiences: Sequence[tuple[int, str]], groups: Sequence[tuple[str, Sequence[Leaf]]]
) -> Callable[[Visitor], Sparse]:
    """`Encoder.reference` for these leaves as one generated function. Only indexes (ints)
    and fixed code go into its source; every name from the artifact (audience keys, path
    parts, category values) is a constant of its namespace, never source text."""
    names: dict[str, Any] = {"_Mapping": Mapping, "_log1p": _log1p, "_INF": _INF}

    def constant(value: Any) -> str:
        name = f"_c{len(names)}"
        names[name] = value
        return name

    code = ["def encode(visitor):", "    out = []", "    add = out.append"]
    if audiences:
        code += ["    a = visitor.audiences", "    if a:"]
        code += [f"        if {constant(key)} in a: add(({int(i)}, 1.0))" for i, key in audiences]
    code.append("    doc = visitor.doc")
    for top, leaves in groups:
        code += [f"    b = doc.get({constant(top)})", "    if b:"]
        for index, kind, parts, wanted in leaves:
            code.append("        v = b")
            for part in parts:
                code.append(
                    f"        v = v.get({constant(part)}) if type(v) is dict or (v is not None"
                    " and isinstance(v, _Mapping)) else None"
                )
            at = int(index)
            if kind == _NUMBER:
                code.append(
                    "        if (type(v) is int or type(v) is float) and v > 0 and v != _INF:"
                    f" add(({at}, _log1p(v)))"
                )
            elif kind == _BOOL:
                code.append(f"        if v is True: add(({at}, 1.0))")
            else:
                code.append(f"        if v == {constant(wanted)}: add(({at}, 1.0))")
    code.append("    return out")
    exec(compile("\n".join(code), "<assembly.learning.features.Encoder>", "exec"), names)
    encode: Callable[[Visitor], Sparse] = names["encode"]
    return encode


class Encoder:
    """Reads a visitor's feature vector: audiences by one set lookup each, signal and trait
    leaves grouped by their top-level part, each by its pre-split path.

    `reference` is the rule, a plain loop over the leaves. `encode`, what models call once per
    page view, is the same rule compiled for these specs into one straight-line function
    (`_compiled`): no loops, no tuple unpacking (about half the time in a page view, measured;
    a property test holds the two equal)."""

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
        self.encode: Callable[[Visitor], Sparse] = _compiled(self._audiences, self._groups)

    def reference(self, visitor: Visitor) -> Sparse:
        """The sparse vector, zeros left out: a leaf is found by its path through mappings
        (anything else on the way: missing); a number feature is `log1p(x)` for an int or
        float above 0 and finite, else 0 (bool is neither)."""
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
                leaf = _descend(base, parts)
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
