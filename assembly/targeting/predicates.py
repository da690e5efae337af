"""Compiled tests of one value (``Pred``) and how they combine: AND, OR and NOT.

A compiled condition is a tree of plain functions ``value -> bool``. The combinators below fold
constant parts (``always``/``never``) away and specialise the common small counts, because they
run on every evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Pred = Callable[[Any], bool]  # a compiled test of one (JSON-like) value


def always(_: Any) -> bool:
    return True


def never(_: Any) -> bool:
    return False


def all_of(preds: list[Pred]) -> Pred:
    """AND of predicates, specialised for the common small counts."""
    if never in preds:
        return never
    preds = [pred for pred in preds if pred is not always]
    if not preds:
        return always
    if len(preds) == 1:
        return preds[0]
    if len(preds) == 2:
        first, second = preds
        return lambda value: first(value) and second(value)
    frozen = tuple(preds)

    def all_pass(value: Any) -> bool:
        for pred in frozen:  # noqa: SIM110 - a plain loop is faster than all(<generator>)
            if not pred(value):
                return False
        return True

    return all_pass


def any_of(preds: list[Pred]) -> Pred:
    """OR of predicates; an empty list is true (GrowthBook's ``evalOr``)."""
    if not preds or always in preds:
        return always
    preds = [pred for pred in preds if pred is not never]
    if not preds:
        return never
    if len(preds) == 1:
        return preds[0]
    frozen = tuple(preds)

    def any_passes(value: Any) -> bool:
        for pred in frozen:  # noqa: SIM110 - a plain loop is faster than any(<generator>)
            if pred(value):
                return True
        return False

    return any_passes


def negate(pred: Pred) -> Pred:
    if pred is always:
        return never
    if pred is never:
        return always
    return lambda value: not pred(value)


def is_null(value: Any) -> bool:
    return value is None
