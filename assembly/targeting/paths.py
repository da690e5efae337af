"""Attribute paths: how a condition reads ``a.b.c`` from the visitor's context (``getPath``).

A path is split on dots; a step into an object reads that key, a step into an array reads an
index (``tags.0``) or ``length``, and any missing step gives null (``None``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from assembly.targeting.jsvalues import array_index, is_array
from assembly.targeting.predicates import Pred

_Steps = tuple[tuple[str, int | None], ...]  # (key, its array index or None) per step


def read_path(doc: Any, path: str) -> Any:
    """The value at ``path`` in ``doc`` exactly as a condition reads it (None when missing)."""
    return _follow(doc, _steps(path))


def on_path(path: str, check: Pred) -> Pred:
    """Apply ``check`` to the value at the dot-separated ``path`` (None when a step is missing)."""
    steps = _steps(path)
    if len(steps) == 1:  # the common case, with one call less per evaluation
        ((key, index),) = steps

        def on_key(obj: Any) -> bool:
            return check(obj.get(key) if type(obj) is dict else _child(obj, key, index))

        return on_key

    return lambda obj: check(_follow(obj, steps))


def _steps(path: str) -> _Steps:
    return tuple((key, array_index(key)) for key in path.split("."))


def _follow(obj: Any, steps: _Steps) -> Any:
    current = obj
    for key, index in steps:
        current = current.get(key) if type(current) is dict else _child(current, key, index)
        if current is None:
            return None
    return current


def _child(current: Any, key: str, index: int | None) -> Any:
    """One step of GrowthBook's ``getPath`` (``key in current ? current[key] : null``)."""
    if isinstance(current, Mapping):
        return current.get(key)
    if is_array(current):
        if index is not None:
            return current[index] if index < len(current) else None
        if key == "length":
            return len(current)
    return None
