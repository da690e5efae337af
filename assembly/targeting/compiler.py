"""GrowthBook's MongoDB-like condition dialect, compiled once into nested closures.

Audience and variant conditions (DESIGN.md section 5) are JSON objects such as
``{"signals.dwell.sku-1001": {"$gt": 30}, "audiences": {"$in": ["vip"]}}``. They are written in
the dialect of GrowthBook's ``evalCondition`` and must give the same answers, so this module
reproduces the JavaScript SDK (``packages/sdk-js/src/mongrule.ts``) including JavaScript's type
coercions; ``tests/assembly/targeting/test_conditions.py`` runs GrowthBook's conformance cases.

The modules of ``assembly.targeting`` hold the parts: ``operators`` (the operator table and
literal comparisons), ``jsvalues`` (JavaScript's coercions), ``regex`` (the JavaScript-to-Python
regex translator), ``versions``, ``paths`` and ``predicates``; this one compiles a whole condition.

Public API
----------
``compile_condition(condition, saved_groups=None) -> Condition``
    Validates and compiles a condition into a plain function ``attributes -> bool``. Compile once
    (when the content library is built) and call the result on the hot path.
``eval_condition(attributes, condition, saved_groups=None) -> bool``
    ``compile_condition(condition, saved_groups)(attributes)``: convenient, but it compiles on every
    call.
``CompiledCondition``
    What ``compile_condition`` returns: the ``test``, the ``spec`` (the JSON it came from), the
    attribute ``paths`` it reads and its ``facts`` (test count and signals, for conflict scores).
``padded_version_string(value) -> str`` (``assembly.targeting.versions``)
    GrowthBook's ``paddedVersionString``; the ``$v...`` operators compare these strings.
``ConditionError`` (``assembly.targeting.exceptions``)
    A ``ValueError`` raised by ``compile_condition`` for structurally unusable input.

Semantics, as GrowthBook's JavaScript SDK
-----------------------------------------
* Top-level keys are AND-ed. ``$and``, ``$or`` (empty list: true), ``$nor`` (empty list: false)
  and ``$not`` combine sub-conditions; every other key is a dotted attribute path (``a.b.c``).
  A path step into a list accepts an index (``tags.0``) or ``length``; a missing step gives null.
* A literal value compares with JavaScript coercion: a string condition is ``String(value) ==
  condition`` (so ``{"id": "123"}`` matches ``123``), a number is ``Number(value) == condition``
  (so ``{"n": 0}`` matches a missing attribute), a boolean is ``value != null && !!value``, null
  needs null or missing, and lists or objects compare as ``JSON.stringify`` output.
* ``$eq``/``$ne`` are strict (``===``): no coercion, and lists or objects are never equal.
  ``$lt $lte $gt $gte`` use JavaScript's relational comparison (strings compare as strings, all else
  as numbers; ``null`` is 0, so a missing attribute is ``> -10``; NaN is never ordered).
* ``$in $nin $ini $nini $inGroup $notInGroup`` test membership (SameValueZero, no coercion); when
  the attribute is a list they test whether it intersects the expected values. No other operator
  maps over a list attribute: ``$eq``, ``$gt``, ``$regex``... compare the list itself (as GrowthBook
  does), use ``$elemMatch`` / ``$all`` / ``$size`` for elements.
* ``$elemMatch`` skips falsy elements (``0``, ``""``, ``false``, null) as GrowthBook does.
* ``$regex``/``$regexi`` test ``String(value)`` (a missing attribute is the string ``"null"``)
  against the pattern with JavaScript's syntax and meaning (no ``u`` flag), translated to Python's
  ``re``: ``\\d \\w \\b`` are ASCII, ``\\s`` is JavaScript's whitespace, ``.`` excludes line
  terminators, ``$`` is end of input, ``[]``/``[^]``, ``(?<name>...)``, Annex B escapes, and a
  backreference to a group that has not matched matches empty; matching runs on UTF-16 code units.
  Patterns JavaScript rejects (``(?i)``, possessive ``a++``...) are invalid. Known differences:
  with ``$regexi`` Python also folds a few special letters (long s, dotless i, the Kelvin sign,
  sharp s), and captures are not reset on each repetition of a group. Compiled patterns are cached.
* ``$vgt $vgte $vlt $vlte $veq $vne`` compare ``padded_version_string`` of both sides.
* ``$inGroup``/``$notInGroup`` read ``saved_groups`` once, at compile time (an unknown group is
  empty). Compile again when saved groups change.
* Values should be JSON-like: ``dict``/``Mapping`` (object), ``list``/``tuple`` (array), ``str``,
  ``int``/``float``, ``bool`` and ``None``. Other objects behave like opaque JavaScript objects.

Malformed input: compile-time errors versus false
-------------------------------------------------
Where GrowthBook's conformance cases pin a malformed condition to *false*, the compiled function
returns False, exactly like GrowthBook:

* an unknown operator inside a field (``{"name": {"$regx": "x"}}``; logged once, at compile time),
* ``$in $nin $ini $nini $all $alli`` whose operand is not a list,
* a ``$regex``/``$regexi`` pattern that is not a valid JavaScript regular expression.

Input that cannot be evaluated meaningfully (GrowthBook would throw or silently coerce it into an
unrelated test) raises ``ConditionError`` from ``compile_condition`` instead, with the location of
the problem (``$and[1].age.$in``):

* a condition, an element of ``$and``/``$or``/``$nor`` or the operand of ``$not`` that is not an
  object; ``$and``/``$or``/``$nor`` whose operand is not a list; a non-string key;
* a field operator used where an attribute path belongs (top level: ``{"$in": [...]}``). Other
  ``$`` keys stay attribute paths, as in GrowthBook (its ``$groups`` conformance case);
* operands of the wrong type: ``$elemMatch`` not an object, ``$regex``/``$regexi``/``$type``/
  ``$inGroup``/``$notInGroup`` not a string, a saved group that is not a list, and condition values
  that are not JSON (sets, dates, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import structlog

from assembly.targeting.exceptions import ConditionError
from assembly.targeting.jsvalues import JSON_SCALARS, describe, is_array
from assembly.targeting.operators import (
    OPERATORS,
    boolean_equals,
    is_operator_object,
    json_equals,
    number_equals,
    string_equals,
)
from assembly.targeting.paths import on_path
from assembly.targeting.predicates import Pred, all_of, any_of, is_null, negate, never

__all__ = [
    "COMBINATORS",
    "NO_FACTS",
    "CompiledCondition",
    "Condition",
    "ConditionFacts",
    "compile_condition",
    "eval_condition",
]

log = structlog.get_logger()

COMBINATORS: Final = ("$and", "$or", "$nor")  # a list of conditions; `$not` takes one
_LOGICAL_KEYS: Final = frozenset({*COMBINATORS, "$not"})


@dataclass(frozen=True, slots=True)
class ConditionFacts:
    """What a condition reads, for conflict scores: how many tests, which `signals.*`."""

    tests: int
    signals: frozenset[str]  # signal names under `signals.`


NO_FACTS = ConditionFacts(0, frozenset())


@dataclass(frozen=True, slots=True)
class CompiledCondition:
    """A condition compiled once: its test, the JSON it came from, and what it reads.

    The hot path calls `test` directly; calling the value itself does the same.
    """

    test: Callable[[Mapping[str, Any]], bool]
    spec: Mapping[str, Any]
    paths: tuple[str, ...]
    facts: ConditionFacts

    def __call__(self, attributes: Mapping[str, Any]) -> bool:
        return self.test(attributes)


Condition = CompiledCondition


def compile_condition(
    condition: Mapping[str, Any], saved_groups: Mapping[str, list[Any]] | None = None
) -> Condition:
    """Compile ``condition`` once into a fast test, kept with its JSON and what it reads."""
    test = _Compiler(saved_groups or {}).condition(condition, "$")
    paths: list[str] = []
    _walk(condition, paths)
    signals = frozenset(p.removeprefix("signals.") for p in paths if p.startswith("signals."))
    return CompiledCondition(test, condition, tuple(paths), ConditionFacts(len(paths), signals))


def _walk(spec: Mapping[str, Any], paths: list[str]) -> None:
    """The attribute paths a condition tests, through `$and`, `$or`, `$nor` and `$not`."""
    for key, value in spec.items():
        if key in COMBINATORS and isinstance(value, list):
            for sub in value:
                if isinstance(sub, Mapping):
                    _walk(sub, paths)
        elif key == "$not" and isinstance(value, Mapping):
            _walk(value, paths)
        else:
            paths.append(key)


def eval_condition(
    attributes: Mapping[str, Any],
    condition: Mapping[str, Any],
    saved_groups: Mapping[str, list[Any]] | None = None,
) -> bool:
    """Evaluate ``condition`` against ``attributes`` (compiles on every call)."""
    return compile_condition(condition, saved_groups)(attributes)


class _Compiler:
    """Compiles conditions against one snapshot of saved groups."""

    def __init__(self, saved_groups: Mapping[str, list[Any]]) -> None:
        self.saved_groups = saved_groups

    # -- conditions (evalCondition) ----------------------------------------------------------

    def condition(self, condition: Any, where: str) -> Pred:
        """An object whose keys are attribute paths or ``$and``/``$or``/``$nor``/``$not``."""
        if not isinstance(condition, Mapping):
            raise ConditionError(
                f"{where}: a condition must be an object, got {describe(condition)}"
            )
        return all_of([self._clause(key, arg, where) for key, arg in condition.items()])

    def _clause(self, key: Any, arg: Any, where: str) -> Pred:
        if not isinstance(key, str):
            raise ConditionError(f"{where}: keys must be strings, got {key!r}")
        here = key if where == "$" else f"{where}.{key}"
        if key in _LOGICAL_KEYS:
            return self._logical(key, arg, here)
        if key in OPERATORS:
            raise ConditionError(f"{here}: operator {key} needs an attribute path before it")
        return on_path(key, self.value(arg, here))

    def _logical(self, key: str, arg: Any, where: str) -> Pred:
        if key == "$not":
            return negate(self.condition(arg, where))
        if not is_array(arg):
            raise ConditionError(f"{where}: {key} needs a list of conditions, got {describe(arg)}")
        preds = [self.condition(item, f"{where}[{n}]") for n, item in enumerate(arg)]
        if key == "$and":
            return all_of(preds)
        return any_of(preds) if key == "$or" else negate(any_of(preds))

    # -- values (evalConditionValue) ---------------------------------------------------------

    def value(self, expected: Any, where: str, insensitive: bool = False) -> Pred:
        """A literal to compare with, or an operator object such as ``{"$gt": 3}``."""
        if isinstance(expected, str):
            return string_equals(expected, insensitive)
        if isinstance(expected, bool):
            return boolean_equals(expected)
        if isinstance(expected, int | float):
            return number_equals(expected)
        if expected is None:
            return is_null
        if isinstance(expected, Mapping) and is_operator_object(expected):
            return all_of([self._operator(op, arg, where) for op, arg in expected.items()])
        _check_json(expected, where)
        return json_equals(expected)

    def _operator(self, op: str, arg: Any, where: str) -> Pred:
        here = f"{where}.{op}"
        build = OPERATORS.get(op)
        if build is None:
            log.warning("assembly.condition.unknown_operator", operator=op, where=here)
            return never  # GrowthBook: "Unknown operator" evaluates to false
        return build(self, here, arg)


def _check_json(value: Any, where: str) -> None:
    """Reject condition values JSON cannot express (they would never compare sensibly)."""
    if is_array(value):
        for item in value:
            _check_json(item, where)
    elif isinstance(value, Mapping):
        for item in value.values():
            _check_json(item, where)
    elif not isinstance(value, JSON_SCALARS):
        raise ConditionError(f"{where}: {type(value).__name__} is not a JSON value")
