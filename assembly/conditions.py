"""GrowthBook's MongoDB-like condition dialect, compiled once into nested closures.

Audience and variant conditions (DESIGN.md section 5) are JSON objects such as
``{"signals.dwell.sku-1001": {"$gt": 30}, "audiences": {"$in": ["vip"]}}``. They are written in
the dialect of GrowthBook's ``evalCondition`` and must give the same answers, so this module
reproduces the JavaScript SDK (``packages/sdk-js/src/mongrule.ts``) including JavaScript's type
coercions; ``tests/assembly/test_conditions.py`` runs GrowthBook's conformance cases.

Public API
----------
``compile_condition(condition, saved_groups=None) -> Condition``
    Validates and compiles a condition into a plain function ``attributes -> bool``. Compile once
    (when the content library is built) and call the result on the hot path.
``eval_condition(attributes, condition, saved_groups=None) -> bool``
    ``compile_condition(condition, saved_groups)(attributes)``: convenient, but it compiles on every
    call.
``padded_version_string(value) -> str``
    GrowthBook's ``paddedVersionString``; the ``$v...`` operators compare these strings.
``ConditionError``
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

import json
import math
import operator
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

import structlog

__all__ = [
    "CompiledCondition",
    "Condition",
    "ConditionError",
    "ConditionFacts",
    "compile_condition",
    "eval_condition",
    "padded_version_string",
]

log = structlog.get_logger()

_Pred = Callable[[Any], bool]  # a compiled test of one (JSON-like) value
_COMBINATORS = ("$and", "$or", "$nor")


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


class ConditionError(ValueError):
    """A condition that cannot be compiled; the message says where and why."""


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
        if key in _COMBINATORS and isinstance(value, list):
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


# --------------------------------------------------------------------------------------------
# JavaScript value semantics over JSON-like Python values
# --------------------------------------------------------------------------------------------

_ARRAY_TYPES: Final = (list, tuple)
_NAN: Final = math.nan
_INF: Final = math.inf
_MAX_SAFE: Final = 2**53
_MAX_ARRAY_INDEX: Final = 2**32 - 2
_JS_SPACE_CHARS: Final = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_DECIMAL_LITERAL: Final = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_RADIX_LITERAL: Final = re.compile(
    r"0(?:[xX](?P<x>[0-9a-fA-F]+)|[oO](?P<o>[0-7]+)|[bB](?P<b>[01]+))"
)
_RADIX_BASES: Final = {"x": 16, "o": 8, "b": 2}
_INFINITY_LITERALS: Final = {"Infinity": _INF, "+Infinity": _INF, "-Infinity": -_INF}


def _is_array(value: Any) -> bool:
    return isinstance(value, _ARRAY_TYPES)


def _is_number(value: Any) -> bool:
    """``typeof value === "number"`` (a Python bool is an int, but a JavaScript boolean)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_double(value: int | float) -> float:
    """A Python number as the IEEE double JavaScript would hold."""
    try:
        return float(value)
    except OverflowError:
        return _INF if value > 0 else -_INF


def _truthy(value: Any) -> bool:
    """JavaScript ``!!value``: empty lists and objects are truthy, NaN is falsy."""
    if value is None or value is False:
        return False
    if isinstance(value, str):
        return value != ""
    if _is_number(value):
        return bool(value == value and value != 0)
    return True


def _number_to_string(value: float) -> str:
    """JavaScript ``Number.prototype.toString()`` (shortest round-trip digits)."""
    if value != value:
        return "NaN"
    if value in (_INF, -_INF):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    if value < 0:
        return "-" + _number_to_string(-value)
    if value < _MAX_SAFE and value.is_integer():
        return str(int(value))
    digits, point = _shortest_digits(value)
    return _format_digits(digits, point)


def _shortest_digits(value: float) -> tuple[str, int]:
    """Digits ``d1d2...dk`` and exponent ``n`` with value = 0.d1d2...dk * 10**n."""
    mantissa, _, exponent = repr(value).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    point = len(whole) + int(exponent or 0)
    significant = digits.lstrip("0")
    point -= len(digits) - len(significant)
    return significant.rstrip("0"), point


def _format_digits(digits: str, point: int) -> str:
    """Number::toString's layout rules for ``0.digits * 10**point``."""
    count = len(digits)
    if count <= point <= 21:
        return digits + "0" * (point - count)
    if 0 < point <= 21:
        return digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return "0." + "0" * -point + digits
    exponent = point - 1
    mantissa = digits if count == 1 else digits[0] + "." + digits[1:]
    return f"{mantissa}e{'+' if exponent >= 0 else '-'}{abs(exponent)}"


def _string_to_number(text: str) -> float:
    """JavaScript ``Number(text)``: trimmed decimal, 0x/0o/0b literal, Infinity, else NaN."""
    text = text.strip(_JS_SPACE_CHARS)
    if not text:
        return 0.0
    if _DECIMAL_LITERAL.fullmatch(text):
        return float(text)
    radix = _RADIX_LITERAL.fullmatch(text)
    if radix and radix.lastgroup:  # the named group that matched: "x", "o" or "b"
        return _as_double(int(radix[radix.lastgroup], _RADIX_BASES[radix.lastgroup]))
    return _INFINITY_LITERALS.get(text, _NAN)


def _to_string(value: Any) -> str:
    """JavaScript ``String(value)`` (arrays join with commas, objects are ``[object Object]``)."""
    if isinstance(value, str):
        return str.__str__(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _number_to_string(_as_double(value))
    if _is_array(value):
        return ",".join("" if item is None else _to_string(item) for item in value)
    return "[object Object]"


def _to_primitive(value: Any) -> Any:
    """JavaScript ``ToPrimitive``: arrays and objects become strings, primitives stay."""
    if value is None or isinstance(value, str | int | float):
        return value
    return _to_string(value)


def _to_number(value: Any) -> float:
    """JavaScript ``Number(value)`` (null is 0, booleans are 0/1, objects are NaN)."""
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return _as_double(value)
    if isinstance(value, str):
        return _string_to_number(value)
    if _is_array(value):
        return _string_to_number(_to_string(value))
    return _NAN


def _js_type(value: Any) -> str:
    """GrowthBook's ``getType``: null, array, string, number, boolean or object."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int | float):
        return "number"
    if _is_array(value):
        return "array"
    return "object"


def _utf16_less(left: str, right: str) -> bool:
    """JavaScript ``left < right``: compares UTF-16 code units, not code points."""
    if left.isascii() or right.isascii():
        return left < right  # identical order unless both hold non-ASCII characters
    return left.encode("utf-16-be", "surrogatepass") < right.encode("utf-16-be", "surrogatepass")


def _array_index(key: str) -> int | None:
    """The array index a property key denotes in JavaScript (``"0"``, ``"17"``), else None."""
    if not key.isdigit() or not key.isascii() or (key[0] == "0" and key != "0"):
        return None
    index = int(key)
    return index if index <= _MAX_ARRAY_INDEX else None


def _js_key_order(obj: Mapping[Any, Any]) -> list[Any]:
    """Property order of a JavaScript object: array indices ascending, then insertion order."""
    keys = list(obj)
    indices = [key for key in keys if _array_index(str(key)) is not None]
    if not indices:
        return keys
    indices.sort(key=lambda key: int(str(key)))
    return indices + [key for key in keys if _array_index(str(key)) is None]


def _json_stringify(value: Any) -> str:
    """``JSON.stringify(value)`` up to string escaping (used only to compare two outputs)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        number = _as_double(value)
        return _number_to_string(number) if math.isfinite(number) else "null"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if _is_array(value):
        return "[" + ",".join(_json_stringify(item) for item in value) + "]"
    if isinstance(value, Mapping):
        members = (
            json.dumps(str(key), ensure_ascii=False) + ":" + _json_stringify(value[key])
            for key in _js_key_order(value)
        )
        return "{" + ",".join(members) + "}"
    return "{}"


# --------------------------------------------------------------------------------------------
# Attribute paths
# --------------------------------------------------------------------------------------------


def _child(current: Any, key: str, index: int | None) -> Any:
    """One step of GrowthBook's ``getPath`` (``key in current ? current[key] : null``)."""
    if isinstance(current, Mapping):
        return current.get(key)
    if _is_array(current):
        if index is not None:
            return current[index] if index < len(current) else None
        if key == "length":
            return len(current)
    return None


def _on_path(path: str, check: _Pred) -> _Pred:
    """Apply ``check`` to the value at the dot-separated ``path`` (None when a step is missing)."""
    steps = tuple((key, _array_index(key)) for key in path.split("."))
    if len(steps) == 1:  # the common case, with one call less per evaluation
        ((key, index),) = steps

        def on_key(obj: Any) -> bool:
            return check(obj.get(key) if type(obj) is dict else _child(obj, key, index))

        return on_key

    def get_path(obj: Any) -> Any:
        current = obj
        for key, index in steps:
            current = current.get(key) if type(current) is dict else _child(current, key, index)
            if current is None:
                return None
        return current

    return lambda obj: check(get_path(obj))


# --------------------------------------------------------------------------------------------
# Versions
# --------------------------------------------------------------------------------------------

_VERSION_NOISE: Final = re.compile("^v|\\+[^\n\r\u2028\u2029]*\\Z")
_VERSION_SEPARATOR: Final = re.compile(r"[-.]")
_ALL_DIGITS: Final = re.compile(r"[0-9]+")


def padded_version_string(value: Any) -> str:
    """GrowthBook's ``paddedVersionString``: a string whose order is the version order.

    ``v`` prefix and ``+build`` suffix are dropped, parts split on ``.`` and ``-``, numeric parts
    left-padded to 5 characters, and ``~`` appended to plain ``x.y.z`` so that a release sorts after
    its pre-releases: ``"1.2.3"`` gives ``"    1-    2-    3-~"``. Non-strings count as ``"0"``.
    """
    if _is_number(value):
        value = _number_to_string(_as_double(value))
    if not isinstance(value, str) or not value:
        value = "0"
    return _padded(value)


@lru_cache(maxsize=4096)
def _padded(version: str) -> str:
    parts = _VERSION_SEPARATOR.split(_VERSION_NOISE.sub("", version))
    if len(parts) == 3:
        parts.append("~")
    return "-".join(part.rjust(5) if _ALL_DIGITS.fullmatch(part) else part for part in parts)


# --------------------------------------------------------------------------------------------
# Regular expressions: JavaScript syntax and semantics on Python's re
# --------------------------------------------------------------------------------------------


class _NotJavaScript(Exception):
    """The pattern is not a valid JavaScript regular expression."""


def _class_body(ranges: Iterable[tuple[int, int]]) -> str:
    """Inclusive code point ranges as the inside of a Python ``[...]`` class."""
    return "".join(f"\\U{low:08x}-\\U{high:08x}" for low, high in ranges)


def _complement(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The code points outside the sorted, disjoint inclusive ``ranges``."""
    gaps, low = [], 0
    for start, end in ranges:
        if start > low:
            gaps.append((low, start - 1))
        low = end + 1
    return [*gaps, (low, sys.maxunicode)]


_DIGIT_RANGES: Final = [(0x30, 0x39)]
_WORD_RANGES: Final = [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)]
_SPACE_RANGES: Final = sorted(
    [(0x09, 0x0D), (0x20, 0x20), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A)]
    + [(c, c) for c in (0x2028, 0x2029, 0x202F, 0x205F, 0x3000, 0xFEFF)]
)
# Inside a class, JavaScript's (ASCII) shorthands; outside, each as a class of its own.
_CLASS_ESCAPES: Final = {
    **{k: _class_body(r) for k, r in (("d", _DIGIT_RANGES), ("w", _WORD_RANGES))},
    **{k: _class_body(_complement(r)) for k, r in (("D", _DIGIT_RANGES), ("W", _WORD_RANGES))},
    "s": _class_body(_SPACE_RANGES),
    "S": _class_body(_complement(_SPACE_RANGES)),
    "f": r"\f",
    "n": r"\n",
    "r": r"\r",
    "t": r"\t",
    "v": r"\x0b",
    "b": r"\x08",  # backspace inside a class
}
_SHORTHANDS: Final = frozenset("dDwWsS")
# JavaScript's shorthand classes are closed under its (non-unicode) case folding, so they match
# case-sensitively even with the `i` flag; Python's folding would add e.g. the Kelvin sign to \w.
_WORD_CLASS: Final = f"[{_CLASS_ESCAPES['w']}]"
_ESCAPES: Final = {
    **{k: f"(?-i:[{v}])" if k in _SHORTHANDS else v for k, v in _CLASS_ESCAPES.items()},
    "b": f"(?-i:(?<={_WORD_CLASS})(?!{_WORD_CLASS})|(?<!{_WORD_CLASS})(?={_WORD_CLASS}))",
    "B": f"(?-i:(?<={_WORD_CLASS})(?={_WORD_CLASS})|(?<!{_WORD_CLASS})(?!{_WORD_CLASS}))",
}
_ASSERTION_ESCAPES: Final = (_ESCAPES["b"], _ESCAPES["B"])
_ANY_BUT_LINE_END: Final = r"[^\n\r\u2028\u2029]"
_QUANTIFIER_BRACES: Final = re.compile(r"\{[0-9]+(?:,[0-9]*)?\}")
_HEX2: Final = re.compile(r"[0-9a-fA-F]{2}")
_HEX4: Final = re.compile(r"[0-9a-fA-F]{4}")
_DECIMALS: Final = re.compile(r"[1-9][0-9]*")
_LEGACY_OCTAL: Final = re.compile(r"[0-3][0-7]{0,2}|[4-7][0-7]?")
_GROUP_NAME: Final = re.compile(r"<([A-Za-z_$][A-Za-z0-9_$]*)>")
_CAPTURING_GROUP: Final = re.compile(r"\\.|\[(?:\\.|[^\]\\])*\]|\((?!\?)|\(\?<(?![=!])", re.S)
_NAMED_GROUP: Final = re.compile(r"\(\?<[A-Za-z_$]")
_ASTRAL: Final = re.compile("[\U00010000-\U0010ffff]")
_SIMPLE_TOKENS: Final = {".": _ANY_BUT_LINE_END, "$": r"\Z", "{": r"\{", "}": r"\}", "]": r"\]"}
_LOOKBEHINDS: Final = ("(?<=", "(?<!")
_PLAIN_OPENERS: Final = ("(?:", "(?=", "(?!", "(?<=", "(?<!")
_CLASS_LITERALS_TO_ESCAPE: Final = frozenset("[&~|")


def _surrogate_pair(match: re.Match[str]) -> str:
    offset = ord(match.group()) - 0x10000
    return chr(0xD800 | offset >> 10) + chr(0xDC00 | offset & 0x3FF)


def _utf16_view(text: str) -> str:
    """``text`` with characters outside the BMP split into surrogates, as JavaScript sees it."""
    if text.isascii() or not _ASTRAL.search(text):
        return text
    return _ASTRAL.sub(_surrogate_pair, text)


@lru_cache(maxsize=1024)
def _compile_regex(source: str, insensitive: bool) -> re.Pattern[str] | None:
    """The JavaScript pattern ``source`` (flag ``i`` if ``insensitive``) compiled, or None."""
    try:
        python = _RegexTranslator(_utf16_view(source)).translate()
        return re.compile(python, re.IGNORECASE if insensitive else 0)
    except (_NotJavaScript, re.error, OverflowError, RecursionError):
        return None


class _RegexTranslator:
    """Rewrites one JavaScript pattern (no ``u`` flag, Annex B syntax) for Python's ``re``."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.pos = 0
        self.total_groups = len(
            [m for m in _CAPTURING_GROUP.finditer(source) if m.group()[0] == "("]
        )
        self.has_named_groups = bool(_NAMED_GROUP.search(source))
        self.groups: list[str | None] = []  # names of the groups opened so far, in order
        self.open: list[int | str] = []  # per open parenthesis: group number, or the opener
        self.closed: set[int] = set()

    def translate(self) -> str:
        out: list[str] = []
        last = "start"  # the previous token: start, atom, assertion, quantifier or lazy
        while self.pos < len(self.source):
            braces = _QUANTIFIER_BRACES.match(self.source, self.pos)
            if braces or self.source[self.pos] in "*+?":
                token = braces.group() if braces else self.source[self.pos]
                last = _quantifier_state(last, token)
                self.pos += len(token)
            else:
                token, repeatable = self.atom()
                last = "atom" if repeatable else "assertion"
            out.append(token)
        if self.open:
            raise _NotJavaScript("unterminated group")
        return "".join(out)

    def atom(self) -> tuple[str, bool]:
        """Translate the token at ``pos`` (not a quantifier), move past it, and tell whether a
        quantifier may follow (not after ``^``, ``$``, ``\\b``, ``\\B`` or a lookbehind)."""
        char = self.source[self.pos]
        if char == "\\":
            text = self.escape()
            return text, text not in _ASSERTION_ESCAPES
        if char == "[":
            return self.character_class(), True
        if char == "(":
            return self.group_opener(), True
        self.pos += 1
        if char == ")":
            return ")", self.close_group() not in _LOOKBEHINDS
        return _SIMPLE_TOKENS.get(char, char), char not in "^$"

    def escape(self) -> str:
        """``\\x`` outside a class: shorthand, backreference, or an escaped character."""
        if self.pos + 1 >= len(self.source):
            raise _NotJavaScript("\\ at end of pattern")
        char = self.source[self.pos + 1]
        decimals = _DECIMALS.match(self.source, self.pos + 1)
        if decimals and int(decimals.group()) <= self.total_groups:
            self.pos = decimals.end()
            return self.backreference(int(decimals.group()))
        if char == "k" and self.has_named_groups:
            return self.named_backreference()
        if char in _ESCAPES:
            self.pos += 2
            return _ESCAPES[char]
        return self.character_escape(in_class=False)

    def character_escape(self, *, in_class: bool) -> str:
        """An escape that denotes one character (shared by classes and the outside)."""
        source, i = self.source, self.pos
        char = source[i + 1]
        if char == "c":
            return self.control_escape(in_class=in_class)
        for prefix, digits in (("x", _HEX2), ("u", _HEX4)):
            hex_digits = digits.match(source, i + 2) if char == prefix else None
            if hex_digits:
                self.pos = hex_digits.end()
                return f"\\{prefix}{hex_digits.group()}"
        octal = _LEGACY_OCTAL.match(source, i + 1)
        if octal:
            self.pos = octal.end()
            return f"\\x{int(octal.group(), 8):02x}"
        self.pos += 2
        return re.escape(char)  # identity escape: `\/` is "/", `\e` is "e", `\8` is "8"

    def control_escape(self, *, in_class: bool) -> str:
        """``\\cX`` is the control character X % 32; without a letter it is a literal ``\\c``."""
        letter = self.source[self.pos + 2 : self.pos + 3]
        if letter.isascii() and (
            letter.isalpha() or (in_class and (letter.isdigit() or letter == "_"))
        ):
            self.pos += 3
            return f"\\x{ord(letter) % 32:02x}"
        self.pos += 1
        return r"\\"  # Annex B: the backslash is literal, "c" is read next

    def backreference(self, number: int) -> str:
        """JavaScript: a group that has not closed yet (or did not match) matches empty."""
        if number not in self.closed:
            return "(?:)"
        return f"(?({number})\\{number})"

    def named_backreference(self) -> str:
        """``\\k<name>`` (only a backreference when the pattern has named groups)."""
        named = _GROUP_NAME.match(self.source, self.pos + 2)
        if not named or f"(?<{named.group(1)}>" not in self.source:
            raise _NotJavaScript("invalid named reference")
        self.pos = named.end()
        name = named.group(1)
        return self.backreference(self.groups.index(name) + 1) if name in self.groups else "(?:)"

    def character_class(self) -> str:
        """``[...]``; JavaScript's ``[]`` never matches and ``[^]`` matches anything."""
        source = self.source
        self.pos += 1
        negated = source.startswith("^", self.pos)
        self.pos += negated
        members: list[tuple[str, bool]] = []  # (Python text, is a shorthand such as \d)
        while self.pos < len(source) and source[self.pos] != "]":
            members.append(self.class_member())
        if self.pos >= len(source):
            raise _NotJavaScript("unterminated character class")
        self.pos += 1
        return _assemble_class(members, negated)

    def class_member(self) -> tuple[str, bool]:
        char = self.source[self.pos]
        if char == "\\":
            if self.pos + 1 >= len(self.source):
                raise _NotJavaScript("\\ at end of pattern")
            letter = self.source[self.pos + 1]
            if letter in _CLASS_ESCAPES:
                self.pos += 2
                return _CLASS_ESCAPES[letter], letter in _SHORTHANDS
            return self.character_escape(in_class=True), False
        self.pos += 1
        return ("\\" + char if char in _CLASS_LITERALS_TO_ESCAPE else char), False

    def group_opener(self) -> str:
        """``(``, ``(?:``, lookarounds and ``(?<name>``; other ``(?`` forms are not JavaScript."""
        source = self.source
        for opener in _PLAIN_OPENERS:
            if source.startswith(opener, self.pos):
                self.pos += len(opener)
                self.open.append(opener)
                return opener
        if not source.startswith("(?", self.pos):
            return self.open_capture(None, self.pos + 1)
        named = _GROUP_NAME.match(source, self.pos + 2)
        if not named:
            raise _NotJavaScript("invalid group")  # inline flags, atomic groups, (?P<...>), ...
        return self.open_capture(named.group(1), named.end())

    def open_capture(self, name: str | None, end: int) -> str:
        self.groups.append(name)
        self.open.append(len(self.groups))
        self.pos = end
        return "(" if name is None else f"(?P<{name}>"

    def close_group(self) -> int | str:
        """Close the innermost group; return its number, or its opener if not capturing."""
        if not self.open:
            raise _NotJavaScript("unmatched )")
        group = self.open.pop()
        if isinstance(group, int):
            self.closed.add(group)
        return group


def _assemble_class(members: list[tuple[str, bool]], negated: bool) -> str:
    """A Python class, or an alternation when shorthands must match case-sensitively."""
    if not members:
        return "(?s:.)" if negated else "(?!)"  # JavaScript's [^] and []
    shorthands = [text for text, is_shorthand in members if is_shorthand]
    if not shorthands:
        return "[" + "^" * negated + "".join(text for text, _ in members) + "]"
    plain = [
        "\\-" if text == "-" and _next_to_shorthand(members, n) else text
        for n, (text, is_shorthand) in enumerate(members)
        if not is_shorthand
    ]  # Annex B: `[a-\d]` is "a", "-" or a digit, not a range
    union = f"(?-i:[{''.join(shorthands)}])" + (f"|[{''.join(plain)}]" if plain else "")
    return f"(?:(?!{union})(?s:.))" if negated else f"(?:{union})"


def _next_to_shorthand(members: list[tuple[str, bool]], n: int) -> bool:
    return any(0 <= m < len(members) and members[m][1] for m in (n - 1, n + 1))


def _quantifier_state(last: str, token: str) -> str:
    """Only an atom can be repeated: ``a*?`` is lazy, but ``a*+`` (possessive in Python) and
    ``^*`` are JavaScript errors."""
    if token == "?" and last == "quantifier":
        return "lazy"
    if last != "atom":
        raise _NotJavaScript("nothing to repeat")
    return "quantifier"


# --------------------------------------------------------------------------------------------
# Membership (Array.prototype.includes, SameValueZero)
# --------------------------------------------------------------------------------------------


class _JsSet:
    """Membership among JSON primitives without coercion; lists and objects never match."""

    __slots__ = ("_booleans", "_fold", "_has_nan", "_has_null", "_numbers", "_strings")

    def __init__(self, items: Iterable[Any], *, fold: bool = False) -> None:
        self._fold = fold
        self._strings: set[str] = set()
        self._numbers: set[float] = set()
        self._booleans: set[bool] = set()
        self._has_null = self._has_nan = False
        for item in items:
            self._add(item)

    def _add(self, item: Any) -> None:
        if item is None:
            self._has_null = True
        elif isinstance(item, bool):
            self._booleans.add(item)
        elif isinstance(item, str):
            self._strings.add(item.lower() if self._fold else item)
        elif _is_number(item):
            self._numbers.add(item)
            self._has_nan = self._has_nan or item != item

    def __contains__(self, value: Any) -> bool:
        if type(value) is str:
            return (value.lower() if self._fold else value) in self._strings
        if value is None:
            return self._has_null
        if isinstance(value, bool):
            return value in self._booleans
        if _is_number(value):
            return value in self._numbers or (value != value and self._has_nan)
        return isinstance(value, str) and self.__contains__(str.__str__(value))

    def matches(self, value: Any) -> bool:
        """GrowthBook's ``isIn``: membership, or intersection when ``value`` is a list."""
        if isinstance(value, _ARRAY_TYPES):
            return any(map(self.__contains__, value))
        return self.__contains__(value)


# --------------------------------------------------------------------------------------------
# Predicate combinators
# --------------------------------------------------------------------------------------------


def _always(_: Any) -> bool:
    return True


def _never(_: Any) -> bool:
    return False


def _all_of(preds: list[_Pred]) -> _Pred:
    """AND of predicates, specialised for the common small counts."""
    if _never in preds:
        return _never
    preds = [pred for pred in preds if pred is not _always]
    if not preds:
        return _always
    if len(preds) == 1:
        return preds[0]
    if len(preds) == 2:
        first, second = preds
        return lambda value: first(value) and second(value)
    frozen = tuple(preds)

    def all_of(value: Any) -> bool:
        for pred in frozen:  # noqa: SIM110 - a plain loop is faster than all(<generator>)
            if not pred(value):
                return False
        return True

    return all_of


def _any_of(preds: list[_Pred]) -> _Pred:
    """OR of predicates; an empty list is true (GrowthBook's ``evalOr``)."""
    if not preds or _always in preds:
        return _always
    preds = [pred for pred in preds if pred is not _never]
    if not preds:
        return _never
    if len(preds) == 1:
        return preds[0]
    frozen = tuple(preds)

    def any_of(value: Any) -> bool:
        for pred in frozen:  # noqa: SIM110 - a plain loop is faster than any(<generator>)
            if pred(value):
                return True
        return False

    return any_of


def _negate(pred: _Pred) -> _Pred:
    if pred is _always:
        return _never
    if pred is _never:
        return _always
    return lambda value: not pred(value)


# --------------------------------------------------------------------------------------------
# Literal comparisons (evalConditionValue without operators)
# --------------------------------------------------------------------------------------------


def _string_equals(expected: str, insensitive: bool) -> _Pred:
    """``value + "" === expected`` (or both lower-cased)."""
    if insensitive:
        folded = expected.lower()
        return lambda value: _to_string(value).lower() == folded
    return lambda value: value == expected if type(value) is str else _to_string(value) == expected


def _number_equals(expected: int | float) -> _Pred:
    """``value * 1 === expected``."""
    target = _as_double(expected)
    if target != target:
        return _never

    def number_equals(value: Any) -> bool:
        kind = type(value)
        if kind is int or kind is float:
            return bool(value == target)
        return _to_number(value) == target

    return number_equals


def _boolean_equals(expected: bool) -> _Pred:
    """``value !== null && !!value === expected``."""
    return lambda value: value is not None and _truthy(value) is expected


def _is_null(value: Any) -> bool:
    return value is None


def _json_equals(expected: Any) -> _Pred:
    """``JSON.stringify(value) === JSON.stringify(expected)`` for a list or object."""
    target = _json_stringify(expected)
    same_kind = _is_array if _is_array(expected) else _is_object
    return lambda value: same_kind(value) and _json_stringify(value) == target


def _is_object(value: Any) -> bool:
    return isinstance(value, Mapping)


def _is_operator_object(obj: Mapping[Any, Any]) -> bool:
    """Non-empty, and every key starts with ``$``."""
    return bool(obj) and all(isinstance(key, str) and key.startswith("$") for key in obj)


# --------------------------------------------------------------------------------------------
# Operators (evalOperatorCondition)
# --------------------------------------------------------------------------------------------


def _strict_equals(expected: Any) -> _Pred:
    """``value === expected``: same type and value; lists and objects never (by reference)."""
    if expected is None:
        return _is_null
    if isinstance(expected, bool):
        return lambda value: isinstance(value, bool) and value is expected
    if _is_number(expected):
        return lambda value: _is_number(value) and bool(value == expected)
    if isinstance(expected, str):
        return lambda value: isinstance(value, str) and value == expected
    return _never


_NUMBER_ORDER: Final[Mapping[str, Callable[[float, float], bool]]] = {
    "$lt": operator.lt,
    "$lte": operator.le,
    "$gt": operator.gt,
    "$gte": operator.ge,
}
_STRING_ORDER: Final[Mapping[str, Callable[[str, str], bool]]] = {
    "$lt": _utf16_less,
    "$lte": lambda left, right: not _utf16_less(right, left),
    "$gt": lambda left, right: _utf16_less(right, left),
    "$gte": lambda left, right: not _utf16_less(left, right),
}


def _relational(op: str, expected: Any) -> _Pred:
    """JavaScript ``value <op> expected``: string order if both are strings, else numeric."""
    primitive = _to_primitive(expected)
    if isinstance(primitive, str):
        return _relational_to_string(op, primitive)
    number_order = _NUMBER_ORDER[op]
    target = _to_number(primitive)
    if target != target:
        return _never

    def to_number(value: Any) -> bool:
        kind = type(value)
        if kind is int or kind is float:
            return number_order(value, target)
        return number_order(_to_number(value), target)

    return to_number


def _relational_to_string(op: str, expected: str) -> _Pred:
    number_order, string_order = _NUMBER_ORDER[op], _STRING_ORDER[op]
    target = _string_to_number(expected)

    def to_string(value: Any) -> bool:
        primitive = _to_primitive(value)
        if isinstance(primitive, str):
            return string_order(primitive, expected)
        return number_order(_to_number(primitive), target)

    return to_string


_VERSION_ORDER: Final[Mapping[str, Callable[[str, str], bool]]] = {
    "$veq": operator.eq,
    "$vne": operator.ne,
    **{"$v" + op[1:]: compare for op, compare in _STRING_ORDER.items()},
}


def _version(op: str, expected: Any) -> _Pred:
    compare, target = _VERSION_ORDER[op], padded_version_string(expected)

    def version(value: Any) -> bool:
        padded = _padded(value) if type(value) is str and value else padded_version_string(value)
        return compare(padded, target)

    return version


def _exists(expected: Any) -> _Pred:
    return _negate(_is_null) if _truthy(expected) else _is_null


def _membership(expected: Any, *, fold: bool = False, negate: bool = False) -> _Pred:
    """``$in``-style: false unless ``expected`` is a list (also for the negated forms)."""
    if not _is_array(expected):
        return _never
    pred = _JsSet(expected, fold=fold).matches
    return _negate(pred) if negate else pred


def _regex(where: str, expected: Any, insensitive: bool) -> _Pred:
    if not isinstance(expected, str):
        raise ConditionError(f"{where}: the pattern must be a string, got {_describe(expected)}")
    pattern = _compile_regex(expected, insensitive)
    if pattern is None:
        return _never
    search = pattern.search

    def regex(value: Any) -> bool:
        text = value if type(value) is str else _to_string(value)
        return search(_utf16_view(text)) is not None

    return regex


def _type_is(where: str, expected: Any) -> _Pred:
    if not isinstance(expected, str):
        raise ConditionError(f"{where}: $type needs a type name, got {_describe(expected)}")
    return lambda value: _js_type(value) == expected


def _describe(value: Any) -> str:
    """``array ["a"]`` for JSON values, the Python type name for anything else."""
    if not isinstance(value, (*_JSON_SCALARS, *_ARRAY_TYPES, Mapping)):
        return type(value).__name__
    return f"{_js_type(value)} {_json_stringify(value)[:60]}"


_LOGICAL_KEYS: Final = frozenset({"$and", "$or", "$nor", "$not"})
_JSON_SCALARS: Final = (str, int, float, bool, type(None))


class _Compiler:
    """Compiles conditions against one snapshot of saved groups."""

    def __init__(self, saved_groups: Mapping[str, list[Any]]) -> None:
        self._saved_groups = saved_groups

    # -- conditions (evalCondition) ----------------------------------------------------------

    def condition(self, condition: Any, where: str) -> _Pred:
        """An object whose keys are attribute paths or ``$and``/``$or``/``$nor``/``$not``."""
        if not isinstance(condition, Mapping):
            raise ConditionError(
                f"{where}: a condition must be an object, got {_describe(condition)}"
            )
        return _all_of([self._clause(key, arg, where) for key, arg in condition.items()])

    def _clause(self, key: Any, arg: Any, where: str) -> _Pred:
        if not isinstance(key, str):
            raise ConditionError(f"{where}: keys must be strings, got {key!r}")
        here = key if where == "$" else f"{where}.{key}"
        if key in _LOGICAL_KEYS:
            return self._logical(key, arg, here)
        if key in _OPERATORS:
            raise ConditionError(f"{here}: operator {key} needs an attribute path before it")
        return _on_path(key, self.value(arg, here))

    def _logical(self, key: str, arg: Any, where: str) -> _Pred:
        if key == "$not":
            return _negate(self.condition(arg, where))
        if not _is_array(arg):
            raise ConditionError(f"{where}: {key} needs a list of conditions, got {_describe(arg)}")
        preds = [self.condition(item, f"{where}[{n}]") for n, item in enumerate(arg)]
        if key == "$and":
            return _all_of(preds)
        return _any_of(preds) if key == "$or" else _negate(_any_of(preds))

    # -- values (evalConditionValue) ---------------------------------------------------------

    def value(self, expected: Any, where: str, insensitive: bool = False) -> _Pred:
        """A literal to compare with, or an operator object such as ``{"$gt": 3}``."""
        if isinstance(expected, str):
            return _string_equals(expected, insensitive)
        if isinstance(expected, bool):
            return _boolean_equals(expected)
        if isinstance(expected, int | float):
            return _number_equals(expected)
        if expected is None:
            return _is_null
        if isinstance(expected, Mapping) and _is_operator_object(expected):
            return _all_of([self._operator(op, arg, where) for op, arg in expected.items()])
        _check_json(expected, where)
        return _json_equals(expected)

    def _operator(self, op: str, arg: Any, where: str) -> _Pred:
        here = f"{where}.{op}"
        build = _OPERATORS.get(op)
        if build is None:
            log.warning("assembly.condition.unknown_operator", operator=op, where=here)
            return _never  # GrowthBook: "Unknown operator" evaluates to false
        return build(self, here, arg)

    # -- operators that recurse or need saved groups -----------------------------------------

    def group(self, where: str, name: Any) -> _Pred:
        """``$inGroup``: membership in the saved group ``name`` (unknown: empty)."""
        if not isinstance(name, str):
            raise ConditionError(f"{where}: a saved group id must be a string, got {name!r}")
        members = self._saved_groups.get(name) or []
        if not _is_array(members):
            raise ConditionError(f"{where}: saved group {name!r} is not a list")
        return _JsSet(members).matches

    def all(self, where: str, expected: Any, insensitive: bool) -> _Pred:
        """``$all``/``$alli``: each expected value matches some element."""
        if not _is_array(expected):
            return _never
        checks = tuple(
            self.value(item, f"{where}[{n}]", insensitive) for n, item in enumerate(expected)
        )

        def all_match(value: Any) -> bool:
            if not _is_array(value):
                return False
            return all(any(check(item) for item in value) for check in checks)

        return all_match

    def elem_match(self, where: str, expected: Any) -> _Pred:
        """``$elemMatch``: some truthy element passes an operator object or a condition."""
        if not isinstance(expected, Mapping):
            raise ConditionError(f"{where}: $elemMatch needs an object, got {_describe(expected)}")
        if _is_operator_object(expected):
            check = self.value(expected, where)
        else:
            check = self.condition(expected, where)

        def elem_match(value: Any) -> bool:
            if not _is_array(value):
                return False
            return any(_truthy(item) and check(item) for item in value)

        return elem_match

    def size(self, where: str, expected: Any) -> _Pred:
        """``$size``: the list's length passes ``expected`` (a number or an operator object)."""
        check = self.value(expected, where)
        return lambda value: _is_array(value) and check(len(value))


def _check_json(value: Any, where: str) -> None:
    """Reject condition values JSON cannot express (they would never compare sensibly)."""
    if _is_array(value):
        for item in value:
            _check_json(item, where)
    elif isinstance(value, Mapping):
        for item in value.values():
            _check_json(item, where)
    elif not isinstance(value, _JSON_SCALARS):
        raise ConditionError(f"{where}: {type(value).__name__} is not a JSON value")


_Builder = Callable[[_Compiler, str, Any], _Pred]  # (compiler, location, operand) -> predicate


def _simple(build: Callable[[Any], _Pred]) -> _Builder:
    return lambda compiler, where, arg: build(arg)


def _ordered(build: Callable[[str, Any], _Pred], op: str) -> _Builder:
    return lambda compiler, where, arg: build(op, arg)


_OPERATORS: Final[Mapping[str, _Builder]] = {
    "$eq": _simple(_strict_equals),
    "$ne": _simple(lambda arg: _negate(_strict_equals(arg))),
    **{op: _ordered(_relational, op) for op in _NUMBER_ORDER},
    **{op: _ordered(_version, op) for op in _VERSION_ORDER},
    "$exists": _simple(_exists),
    "$in": _simple(_membership),
    "$nin": _simple(lambda arg: _membership(arg, negate=True)),
    "$ini": _simple(lambda arg: _membership(arg, fold=True)),
    "$nini": _simple(lambda arg: _membership(arg, fold=True, negate=True)),
    "$inGroup": _Compiler.group,
    "$notInGroup": lambda compiler, where, arg: _negate(compiler.group(where, arg)),
    "$all": lambda compiler, where, arg: compiler.all(where, arg, False),
    "$alli": lambda compiler, where, arg: compiler.all(where, arg, True),
    "$elemMatch": _Compiler.elem_match,
    "$size": _Compiler.size,
    "$not": lambda compiler, where, arg: _negate(compiler.value(arg, where)),
    "$regex": lambda compiler, where, arg: _regex(where, arg, False),
    "$regexi": lambda compiler, where, arg: _regex(where, arg, True),
    "$type": lambda compiler, where, arg: _type_is(where, arg),
}
