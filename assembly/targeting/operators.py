"""The operator table (GrowthBook's ``evalOperatorCondition``) and literal comparisons.

A literal in a condition (``{"id": "123"}``) compares with JavaScript's loose coercions
(``string_equals``, ``number_equals``, ``boolean_equals``, ``json_equals``); an operator object
(``{"$gt": 3}``) builds one predicate per operator through ``OPERATORS``: strict ``$eq``/``$ne``,
relational ``$lt $lte $gt $gte``, versions ``$v...``, ``$exists``, membership ``$in $nin $ini
$nini $inGroup $notInGroup``, ``$all $alli $elemMatch $size``, ``$not``, ``$regex $regexi`` and
``$type``. Operators that hold sub-conditions or read saved groups call back into the compiler
through the ``Compiler`` protocol. compiler.py documents the semantics in full.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

from assembly.targeting.exceptions import ConditionError
from assembly.targeting.jsvalues import (
    JsSet,
    as_double,
    describe,
    is_array,
    is_number,
    js_type,
    json_stringify,
    string_to_number,
    to_number,
    to_primitive,
    to_string,
    truthy,
    utf16_less,
)
from assembly.targeting.predicates import Pred, is_null, negate, never
from assembly.targeting.regex import compile_regex, utf16_view
from assembly.targeting.versions import padded_text, padded_version_string


class Compiler(Protocol):
    """The condition compiler, as the operators that recurse or read saved groups see it."""

    @property
    def saved_groups(self) -> Mapping[str, list[Any]]: ...

    def condition(self, condition: Any, where: str) -> Pred: ...

    def value(self, expected: Any, where: str, insensitive: bool = False) -> Pred: ...


Builder = Callable[[Compiler, str, Any], Pred]  # (compiler, location, operand) -> predicate


# --------------------------------------------------------------------------------------------
# Literal comparisons (evalConditionValue without operators)
# --------------------------------------------------------------------------------------------


def string_equals(expected: str, insensitive: bool) -> Pred:
    """``value + "" === expected`` (or both lower-cased)."""
    if insensitive:
        folded = expected.lower()
        return lambda value: to_string(value).lower() == folded
    return lambda value: value == expected if type(value) is str else to_string(value) == expected


def number_equals(expected: int | float) -> Pred:
    """``value * 1 === expected``."""
    target = as_double(expected)
    if target != target:
        return never

    def equals_number(value: Any) -> bool:
        kind = type(value)
        if kind is int or kind is float:
            return bool(value == target)
        return to_number(value) == target

    return equals_number


def boolean_equals(expected: bool) -> Pred:
    """``value !== null && !!value === expected``."""
    return lambda value: value is not None and truthy(value) is expected


def json_equals(expected: Any) -> Pred:
    """``JSON.stringify(value) === JSON.stringify(expected)`` for a list or object."""
    target = json_stringify(expected)
    same_kind = is_array if is_array(expected) else _is_object
    return lambda value: same_kind(value) and json_stringify(value) == target


def _is_object(value: Any) -> bool:
    return isinstance(value, Mapping)


def is_operator_object(obj: Mapping[Any, Any]) -> bool:
    """Non-empty, and every key starts with ``$``."""
    return bool(obj) and all(isinstance(key, str) and key.startswith("$") for key in obj)


# --------------------------------------------------------------------------------------------
# Operators (evalOperatorCondition)
# --------------------------------------------------------------------------------------------


def _strict_equals(expected: Any) -> Pred:
    """``value === expected``: same type and value; lists and objects never (by reference)."""
    if expected is None:
        return is_null
    if isinstance(expected, bool):
        return lambda value: isinstance(value, bool) and value is expected
    if is_number(expected):
        return lambda value: is_number(value) and bool(value == expected)
    if isinstance(expected, str):
        return lambda value: isinstance(value, str) and value == expected
    return never


_NUMBER_ORDER: Final[Mapping[str, Callable[[float, float], bool]]] = {
    "$lt": operator.lt,
    "$lte": operator.le,
    "$gt": operator.gt,
    "$gte": operator.ge,
}
_STRING_ORDER: Final[Mapping[str, Callable[[str, str], bool]]] = {
    "$lt": utf16_less,
    "$lte": lambda left, right: not utf16_less(right, left),
    "$gt": lambda left, right: utf16_less(right, left),
    "$gte": lambda left, right: not utf16_less(left, right),
}


def _relational(op: str, expected: Any) -> Pred:
    """JavaScript ``value <op> expected``: string order if both are strings, else numeric."""
    primitive = to_primitive(expected)
    if isinstance(primitive, str):
        return _relational_to_string(op, primitive)
    number_order = _NUMBER_ORDER[op]
    target = to_number(primitive)
    if target != target:
        return never

    def against_number(value: Any) -> bool:
        kind = type(value)
        if kind is int or kind is float:
            return number_order(value, target)
        return number_order(to_number(value), target)

    return against_number


def _relational_to_string(op: str, expected: str) -> Pred:
    number_order, string_order = _NUMBER_ORDER[op], _STRING_ORDER[op]
    target = string_to_number(expected)

    def against_string(value: Any) -> bool:
        primitive = to_primitive(value)
        if isinstance(primitive, str):
            return string_order(primitive, expected)
        return number_order(to_number(primitive), target)

    return against_string


_VERSION_ORDER: Final[Mapping[str, Callable[[str, str], bool]]] = {
    "$veq": operator.eq,
    "$vne": operator.ne,
    **{"$v" + op[1:]: compare for op, compare in _STRING_ORDER.items()},
}


def _version(op: str, expected: Any) -> Pred:
    compare, target = _VERSION_ORDER[op], padded_version_string(expected)

    def version(value: Any) -> bool:
        padded = (
            padded_text(value) if type(value) is str and value else padded_version_string(value)
        )
        return compare(padded, target)

    return version


def _exists(expected: Any) -> Pred:
    return negate(is_null) if truthy(expected) else is_null


def _membership(expected: Any, *, fold: bool = False, negated: bool = False) -> Pred:
    """``$in``-style: false unless ``expected`` is a list (also for the negated forms)."""
    if not is_array(expected):
        return never
    pred = JsSet(expected, fold=fold).matches
    return negate(pred) if negated else pred


def _regex(where: str, expected: Any, insensitive: bool) -> Pred:
    if not isinstance(expected, str):
        raise ConditionError(f"{where}: the pattern must be a string, got {describe(expected)}")
    pattern = compile_regex(expected, insensitive)
    if pattern is None:
        return never
    search = pattern.search

    def regex(value: Any) -> bool:
        text = value if type(value) is str else to_string(value)
        return search(utf16_view(text)) is not None

    return regex


def _type_is(where: str, expected: Any) -> Pred:
    if not isinstance(expected, str):
        raise ConditionError(f"{where}: $type needs a type name, got {describe(expected)}")
    return lambda value: js_type(value) == expected


# --------------------------------------------------------------------------------------------
# Operators that recurse or read saved groups
# --------------------------------------------------------------------------------------------


def _in_group(compiler: Compiler, where: str, name: Any) -> Pred:
    """``$inGroup``: membership in the saved group ``name`` (unknown: empty)."""
    if not isinstance(name, str):
        raise ConditionError(f"{where}: a saved group id must be a string, got {name!r}")
    members = compiler.saved_groups.get(name) or []
    if not is_array(members):
        raise ConditionError(f"{where}: saved group {name!r} is not a list")
    return JsSet(members).matches


def _all(compiler: Compiler, where: str, expected: Any, insensitive: bool) -> Pred:
    """``$all``/``$alli``: each expected value matches some element."""
    if not is_array(expected):
        return never
    checks = tuple(
        compiler.value(item, f"{where}[{n}]", insensitive) for n, item in enumerate(expected)
    )

    def all_match(value: Any) -> bool:
        if not is_array(value):
            return False
        return all(any(check(item) for item in value) for check in checks)

    return all_match


def _elem_match(compiler: Compiler, where: str, expected: Any) -> Pred:
    """``$elemMatch``: some truthy element passes an operator object or a condition."""
    if not isinstance(expected, Mapping):
        raise ConditionError(f"{where}: $elemMatch needs an object, got {describe(expected)}")
    if is_operator_object(expected):
        check = compiler.value(expected, where)
    else:
        check = compiler.condition(expected, where)

    def elem_match(value: Any) -> bool:
        if not is_array(value):
            return False
        return any(truthy(item) and check(item) for item in value)

    return elem_match


def _size(compiler: Compiler, where: str, expected: Any) -> Pred:
    """``$size``: the list's length passes ``expected`` (a number or an operator object)."""
    check = compiler.value(expected, where)
    return lambda value: is_array(value) and check(len(value))


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------


def _simple(build: Callable[[Any], Pred]) -> Builder:
    return lambda compiler, where, arg: build(arg)


def _ordered(build: Callable[[str, Any], Pred], op: str) -> Builder:
    return lambda compiler, where, arg: build(op, arg)


OPERATORS: Final[Mapping[str, Builder]] = {
    "$eq": _simple(_strict_equals),
    "$ne": _simple(lambda arg: negate(_strict_equals(arg))),
    **{op: _ordered(_relational, op) for op in _NUMBER_ORDER},
    **{op: _ordered(_version, op) for op in _VERSION_ORDER},
    "$exists": _simple(_exists),
    "$in": _simple(_membership),
    "$nin": _simple(lambda arg: _membership(arg, negated=True)),
    "$ini": _simple(lambda arg: _membership(arg, fold=True)),
    "$nini": _simple(lambda arg: _membership(arg, fold=True, negated=True)),
    "$inGroup": _in_group,
    "$notInGroup": lambda compiler, where, arg: negate(_in_group(compiler, where, arg)),
    "$all": lambda compiler, where, arg: _all(compiler, where, arg, False),
    "$alli": lambda compiler, where, arg: _all(compiler, where, arg, True),
    "$elemMatch": _elem_match,
    "$size": _size,
    "$not": lambda compiler, where, arg: negate(compiler.value(arg, where)),
    "$regex": lambda compiler, where, arg: _regex(where, arg, False),
    "$regexi": lambda compiler, where, arg: _regex(where, arg, True),
    "$type": lambda compiler, where, arg: _type_is(where, arg),
}
