"""JavaScript's value semantics over JSON-like Python values, as GrowthBook's conditions see them.

Conditions are evaluated the way GrowthBook's JavaScript SDK evaluates them, so a Python value is
read as the JavaScript value it stands for: ``dict``/``Mapping`` is an object, ``list``/``tuple``
an array, ``bool`` a boolean (not a number), ``int``/``float`` an IEEE double, ``None`` null. This
module holds the coercions the operators need: ``String(value)``, ``Number(value)``, ``!!value``,
``ToPrimitive``, ``typeof`` (GrowthBook's ``getType``), UTF-16 string order, ``JSON.stringify``
(to compare two outputs) and ``Array.prototype.includes`` membership (``JsSet``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

ARRAY_TYPES: Final = (list, tuple)
JSON_SCALARS: Final = (str, int, float, bool, type(None))
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


def is_array(value: Any) -> bool:
    return isinstance(value, ARRAY_TYPES)


def is_number(value: Any) -> bool:
    """``typeof value === "number"`` (a Python bool is an int, but a JavaScript boolean)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def as_double(value: int | float) -> float:
    """A Python number as the IEEE double JavaScript would hold."""
    try:
        return float(value)
    except OverflowError:
        return _INF if value > 0 else -_INF


def truthy(value: Any) -> bool:
    """JavaScript ``!!value``: empty lists and objects are truthy, NaN is falsy."""
    if value is None or value is False:
        return False
    if isinstance(value, str):
        return value != ""
    if is_number(value):
        return bool(value == value and value != 0)
    return True


def number_to_string(value: float) -> str:
    """JavaScript ``Number.prototype.toString()`` (shortest round-trip digits)."""
    if value != value:
        return "NaN"
    if value in (_INF, -_INF):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    if value < 0:
        return "-" + number_to_string(-value)
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


def string_to_number(text: str) -> float:
    """JavaScript ``Number(text)``: trimmed decimal, 0x/0o/0b literal, Infinity, else NaN."""
    text = text.strip(_JS_SPACE_CHARS)
    if not text:
        return 0.0
    if _DECIMAL_LITERAL.fullmatch(text):
        return float(text)
    radix = _RADIX_LITERAL.fullmatch(text)
    if radix and radix.lastgroup:  # the named group that matched: "x", "o" or "b"
        return as_double(int(radix[radix.lastgroup], _RADIX_BASES[radix.lastgroup]))
    return _INFINITY_LITERALS.get(text, _NAN)


def to_string(value: Any) -> str:
    """JavaScript ``String(value)`` (arrays join with commas, objects are ``[object Object]``)."""
    if isinstance(value, str):
        return str.__str__(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return number_to_string(as_double(value))
    if is_array(value):
        return ",".join("" if item is None else to_string(item) for item in value)
    return "[object Object]"


def to_primitive(value: Any) -> Any:
    """JavaScript ``ToPrimitive``: arrays and objects become strings, primitives stay."""
    if value is None or isinstance(value, str | int | float):
        return value
    return to_string(value)


def to_number(value: Any) -> float:
    """JavaScript ``Number(value)`` (null is 0, booleans are 0/1, objects are NaN)."""
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return as_double(value)
    if isinstance(value, str):
        return string_to_number(value)
    if is_array(value):
        return string_to_number(to_string(value))
    return _NAN


def js_type(value: Any) -> str:
    """GrowthBook's ``getType``: null, array, string, number, boolean or object."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int | float):
        return "number"
    if is_array(value):
        return "array"
    return "object"


def utf16_less(left: str, right: str) -> bool:
    """JavaScript ``left < right``: compares UTF-16 code units, not code points."""
    if left.isascii() or right.isascii():
        return left < right  # identical order unless both hold non-ASCII characters
    return left.encode("utf-16-be", "surrogatepass") < right.encode("utf-16-be", "surrogatepass")


def array_index(key: str) -> int | None:
    """The array index a property key denotes in JavaScript (``"0"``, ``"17"``), else None."""
    if not key.isdigit() or not key.isascii() or (key[0] == "0" and key != "0"):
        return None
    index = int(key)
    return index if index <= _MAX_ARRAY_INDEX else None


def _js_key_order(obj: Mapping[Any, Any]) -> list[Any]:
    """Property order of a JavaScript object: array indices ascending, then insertion order."""
    keys = list(obj)
    indices = [key for key in keys if array_index(str(key)) is not None]
    if not indices:
        return keys
    indices.sort(key=lambda key: int(str(key)))
    return indices + [key for key in keys if array_index(str(key)) is None]


def json_stringify(value: Any) -> str:
    """``JSON.stringify(value)`` up to string escaping (used only to compare two outputs)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        number = as_double(value)
        return number_to_string(number) if math.isfinite(number) else "null"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if is_array(value):
        return "[" + ",".join(json_stringify(item) for item in value) + "]"
    if isinstance(value, Mapping):
        members = (
            json.dumps(str(key), ensure_ascii=False) + ":" + json_stringify(value[key])
            for key in _js_key_order(value)
        )
        return "{" + ",".join(members) + "}"
    return "{}"


def describe(value: Any) -> str:
    """``array ["a"]`` for JSON values, the Python type name for anything else (for errors)."""
    if not isinstance(value, (*JSON_SCALARS, *ARRAY_TYPES, Mapping)):
        return type(value).__name__
    return f"{js_type(value)} {json_stringify(value)[:60]}"


# --------------------------------------------------------------------------------------------
# Membership (Array.prototype.includes, SameValueZero)
# --------------------------------------------------------------------------------------------


class JsSet:
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
        elif is_number(item):
            self._numbers.add(item)
            self._has_nan = self._has_nan or item != item

    def __contains__(self, value: Any) -> bool:
        if type(value) is str:
            return (value.lower() if self._fold else value) in self._strings
        if value is None:
            return self._has_null
        if isinstance(value, bool):
            return value in self._booleans
        if is_number(value):
            return value in self._numbers or (value != value and self._has_nan)
        return isinstance(value, str) and self.__contains__(str.__str__(value))

    def matches(self, value: Any) -> bool:
        """GrowthBook's ``isIn``: membership, or intersection when ``value`` is a list."""
        if isinstance(value, ARRAY_TYPES):
            return any(map(self.__contains__, value))
        return self.__contains__(value)
