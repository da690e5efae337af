"""Conditions: GrowthBook's conformance cases, plus our compile-time checks and path handling."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from assembly.targeting.compiler import compile_condition, eval_condition
from assembly.targeting.exceptions import ConditionError
from assembly.targeting.versions import padded_version_string

GROWTHBOOK = Path(__file__).resolve().parents[3].parent / "shared" / "reference" / "growthbook"
CASES: dict[str, Any] = json.loads((GROWTHBOOK / "cases.json").read_text())
VERSION_CASES: dict[str, list[list[Any]]] = json.loads(
    (GROWTHBOOK / "cases-0.5.4-with-versionCompare.json").read_text()
)["versionCompare"]


def _eval_condition_cases() -> list[Any]:
    params = []
    for case in CASES["evalCondition"]:
        name, condition, attributes, expected = case[:4]
        saved_groups = case[4] if len(case) > 4 else None
        params.append(pytest.param(condition, attributes, expected, saved_groups, id=name))
    return params


def test_case_counts() -> None:
    assert len(CASES["evalCondition"]) == 248
    assert sum(len(case) == 5 for case in CASES["evalCondition"]) == 8
    assert {op: len(cases) for op, cases in VERSION_CASES.items()} == {"lt": 15, "gt": 35, "eq": 13}


@pytest.mark.parametrize(
    ("condition", "attributes", "expected", "saved_groups"), _eval_condition_cases()
)
def test_eval_condition_conformance(
    condition: dict[str, Any],
    attributes: dict[str, Any],
    expected: bool,
    saved_groups: dict[str, list[Any]] | None,
) -> None:
    assert eval_condition(attributes, condition, saved_groups) is expected
    compiled = compile_condition(condition, saved_groups)
    assert compiled(attributes) is expected
    assert compiled(attributes) is expected  # a compiled condition is reusable


VERSION_ORDER = {
    "lt": lambda left, right: left < right,
    "gt": lambda left, right: left > right,
    "eq": lambda left, right: left == right,
}
VERSION_OPERATOR = {"lt": "$vlt", "gt": "$vgt", "eq": "$veq"}


@pytest.mark.parametrize(
    ("order", "left", "right", "expected"),
    [
        pytest.param(order, left, right, expected, id=f"{left} {order} {right}")
        for order, cases in VERSION_CASES.items()
        for left, right, expected in cases
    ],
)
def test_version_compare(order: str, left: str, right: str, expected: bool) -> None:
    padded_left, padded_right = padded_version_string(left), padded_version_string(right)
    assert VERSION_ORDER[order](padded_left, padded_right) is expected
    condition = {"v": {VERSION_OPERATOR[order]: right}}
    assert compile_condition(condition)({"v": left}) is expected


def test_padded_version_string() -> None:
    assert padded_version_string("v1.2.3+build.7") == "    1-    2-    3-~"
    assert padded_version_string("1.0.0-rc.1") == "    1-    0-    0-rc-    1"
    assert padded_version_string(None) == padded_version_string("") == "    0"
    assert padded_version_string(2) == "    2"


# -- dotted paths -------------------------------------------------------------------------------

SIGNALS = {"signals": {"dwell": {"sku-1001": 31, "sku-2002": 4}, "visits": 3}}


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"signals.dwell.sku-1001": {"$gt": 30}}, True),
        ({"signals.dwell.sku-2002": {"$gt": 30}}, False),
        ({"signals.dwell.sku-9999": {"$gt": 30}}, False),  # missing: null is 0
        ({"signals.dwell.sku-9999": {"$exists": False}}, True),
        ({"signals.dwell.sku-1001.deeper": {"$exists": True}}, False),
        ({"signals.visits": 3, "signals.dwell.sku-1001": {"$gte": 31, "$lt": 60}}, True),
        ({"signals.dwell": {"$type": "object"}}, True),
        ({"signals.nothing.here": None}, True),
    ],
)
def test_dotted_paths_into_nested_objects(condition: dict[str, Any], expected: bool) -> None:
    assert compile_condition(condition)(SIGNALS) is expected


def test_paths_index_into_lists_like_javascript() -> None:
    attributes = {"cart": {"items": [{"sku": "a"}, {"sku": "b"}]}}
    assert compile_condition({"cart.items.1.sku": "b"})(attributes)
    assert compile_condition({"cart.items.length": 2})(attributes)
    assert compile_condition({"cart.items.2.sku": {"$exists": False}})(attributes)
    assert compile_condition({"cart.items.01.sku": {"$exists": False}})(attributes)


def test_paths_accept_any_mapping() -> None:
    from types import MappingProxyType

    attributes = MappingProxyType({"page": MappingProxyType({"path": "/products/42"})})
    assert compile_condition({"page.path": {"$regex": "^/products/"}})(attributes)


# -- compile-time errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        (["not", "an", "object"], "$: a condition must be an object"),
        ({"$and": {"a": 1}}, "$and: $and needs a list of conditions"),
        ({"$or": "a"}, "$or: $or needs a list of conditions"),
        ({"$nor": None}, "$nor: $nor needs a list of conditions"),
        ({"$and": [{"a": 1}, 5]}, "$and[1]: a condition must be an object"),
        ({"$not": [{"a": 1}]}, "$not: a condition must be an object"),
        ({"$in": ["a"]}, "$in: operator $in needs an attribute path"),
        ({"$or": [{"$eq": 1}]}, "$or[0].$eq: operator $eq needs an attribute path"),
        ({"tags": {"$elemMatch": 5}}, "tags.$elemMatch: $elemMatch needs an object"),
        ({"tags": {"$elemMatch": {"$gt": 1}}, "x": {"$regex": 3}}, "x.$regex: the pattern"),
        ({"x": {"$type": 1}}, "x.$type: $type needs a type name"),
        ({"id": {"$inGroup": 7}}, "id.$inGroup: a saved group id must be a string"),
        ({"tags": {"$elemMatch": {"n": {1, 2}}}}, "tags.$elemMatch.n: set is not a JSON value"),
        ({1: "x"}, "$: keys must be strings"),
    ],
)
def test_structurally_unusable_conditions_raise(condition: Any, message: str) -> None:
    with pytest.raises(ConditionError, match=re.escape(message)):
        compile_condition(condition)
    assert issubclass(ConditionError, ValueError)


def test_saved_group_must_be_a_list() -> None:
    with pytest.raises(ConditionError, match="saved group 'g' is not a list"):
        compile_condition({"id": {"$inGroup": "g"}}, {"g": "abc"})  # type: ignore[dict-item]


@pytest.mark.parametrize(
    "condition",
    [
        {"name": {"$regx": "hello"}},  # unknown field operator (conformance: false)
        {"name": {"$and": [{"a": 1}]}},  # logical operators are not field operators
        {"num": {"$in": 1}},  # conformance: false
        {"num": {"$nin": 1}},  # conformance: false, not true
        {"tags": {"$all": "one"}},
        {"name": {"$regex": "/???***[)"}},  # invalid pattern (conformance: false)
        {"name": {"$regex": "(?i)hello"}},  # inline flags are not JavaScript
        {"name": {"$regex": "hel++o"}},  # possessive quantifiers are not JavaScript
    ],
)
def test_malformed_but_pinned_conditions_compile_to_false(condition: dict[str, Any]) -> None:
    compiled = compile_condition(condition)
    assert compiled({"name": "hello", "num": 1, "tags": ["one"]}) is False


def test_top_level_dollar_keys_other_than_operators_are_paths() -> None:
    assert compile_condition({"$groups": {"$elemMatch": {"$eq": "a"}}})({"$groups": ["a"]})


# -- JavaScript semantics beyond the conformance file ---------------------------------------------


@pytest.mark.parametrize(
    ("condition", "attributes", "expected"),
    [
        ({"id": "123"}, {"id": 123}, True),  # value + "" === "123"
        ({"n": 1.5}, {"n": "1.5"}, True),  # value * 1 === 1.5
        ({"n": 0}, {}, True),  # null * 1 === 0
        ({"n": {"$eq": 1}}, {"n": "1"}, False),  # $eq is strict
        ({"n": {"$eq": 1}}, {"n": 1.0}, True),
        ({"n": {"$in": [1, 2]}}, {"n": True}, False),  # a boolean is not the number 1
        ({"n": {"$gt": 5}}, {"n": [6]}, True),  # [6] -> "6" -> 6
        ({"n": {"$gt": "b"}}, {"n": ["c"]}, True),  # both strings: string order
        ({"n": {"$lt": "abc"}}, {"n": 1}, False),  # "abc" -> NaN
        ({"s": {"$regex": "^null$"}}, {}, True),  # a missing attribute tests as "null"
        ({"s": {"$regex": "^1\\d$"}}, {"s": "1٣"}, False),  # \d is ASCII in JavaScript
        ({"s": {"$regex": "end$"}}, {"s": "the end\n"}, False),  # $ is end of input
        ({"s": {"$regex": "(?<y>\\d{4})-\\k<y>"}}, {"s": "2024-2024"}, True),
        ({"v": {"$vgte": "2.3.0"}}, {"v": 2.3}, False),  # the number 2.3 is "2.3" < "2.3.0"
        ({"nums": {"$elemMatch": {"$eq": 0}}}, {"nums": [0]}, False),  # falsy elements skipped
        ({"o": {"b": 1, "a": 2}}, {"o": {"a": 2, "b": 1}}, False),  # JSON.stringify key order
        ({"o": {"a": 1, "0": 2}}, {"o": {"0": 2, "a": 1}}, True),  # index keys sort first
        ({"l": [1, 2]}, {"l": (1.0, 2)}, True),
        ({"$nor": []}, {}, False),
        ({"tags": {"$all": [{"$gt": 2}, "x"]}}, {"tags": ["x", 3]}, True),
    ],
)
def test_javascript_semantics(
    condition: dict[str, Any], attributes: dict[str, Any], expected: bool
) -> None:
    assert compile_condition(condition)(attributes) is expected


def test_saved_groups_are_read_at_compile_time() -> None:
    groups = {"vip": ["u1"]}
    compiled = compile_condition({"id": {"$inGroup": "vip"}}, groups)
    groups["vip"] = ["u2"]
    assert compiled({"id": "u1"}) is True
    assert compiled({"id": ["u0", "u1"]}) is True  # a list attribute intersects the group
