"""A condition, part by part: every attribute path it tests, the value it read, the outcome.

The verdict is the compiled condition's own (the one the engine calls). Each part is compiled
on its own to show which part held; `$inGroup` parts see no saved groups here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from assembly.targeting.compiler import COMBINATORS, compile_condition
from assembly.targeting.exceptions import ConditionError
from assembly.targeting.paths import read_path
from integration.model import Condition


def explain_condition(condition: Condition, doc: Mapping[str, Any]) -> dict[str, Any]:
    """`{"passed", "spec", "parts"}`: the verdict and, when the source is known, its parts."""
    spec = condition.spec
    parts = _parts(spec, doc) if spec is not None else []
    return {"passed": condition(doc), "spec": spec, "parts": parts}


def summary(explained: dict[str, Any]) -> str:
    """One line: every path tested, the value read, and whether that part held."""
    leaves: list[str] = []
    _leaves(explained.get("parts", []), leaves)
    verdict = "true" if explained["passed"] else "false"
    return f"{verdict}: {'; '.join(leaves)}" if leaves else verdict


def _leaves(parts: list[dict[str, Any]], out: list[str]) -> None:
    for part in parts:
        if "path" in part:
            mark = {True: "holds", False: "fails", None: "?"}[part["passed"]]
            out.append(f"{part['path']} = {json.dumps(part['value'], default=str)} ({mark})")
        else:
            _leaves(part.get("parts", []), out)


def _parts(spec: Mapping[str, Any], doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    parts = []
    for key, test in spec.items():
        part: dict[str, Any]
        if key in COMBINATORS and isinstance(test, list):
            part = {"op": key, "parts": [_group(sub, doc) for sub in test]}
        elif key == "$not" and isinstance(test, Mapping):
            part = {"op": key, "parts": _parts(test, doc)}
        else:
            part = {"path": key, "test": test, "value": read_path(doc, key)}
        part["passed"] = _holds({key: test}, doc)
        parts.append(part)
    return parts


def _group(spec: Any, doc: Mapping[str, Any]) -> dict[str, Any]:
    """One element of `$and`/`$or`/`$nor`: its own part when it tests one thing."""
    if not isinstance(spec, Mapping):
        return {"test": spec, "passed": None}
    parts = _parts(spec, doc)
    return (
        parts[0] if len(parts) == 1 else {"op": "$and", "parts": parts, "passed": _holds(spec, doc)}
    )


def _holds(spec: Mapping[str, Any], doc: Mapping[str, Any]) -> bool | None:
    try:
        return compile_condition(spec)(doc)
    except ConditionError:
        return None
