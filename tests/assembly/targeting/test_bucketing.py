"""Bucketing: GrowthBook's conformance cases for hashing, ranges, variations and namespaces."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from growthbook.core import _is_valid_weight_vector

from assembly.targeting.bucketing import (
    choose_variation,
    fnv1a32,
    gb_hash,
    get_bucket_ranges,
    get_equal_weights,
    in_namespace,
    in_range,
    weights_valid,
)

GROWTHBOOK = Path(__file__).resolve().parents[3].parent / "shared" / "reference" / "growthbook"
CASES: dict[str, Any] = json.loads((GROWTHBOOK / "cases.json").read_text())


def _floor8(x: float) -> float:
    """GrowthBook's runner rounds with ``Math.floor(x * 1e8) / 1e8`` before comparing."""
    return math.floor(x * 1e8) / 1e8


def _floor_ranges(ranges: list[Any]) -> list[tuple[float, float]]:
    return [(_floor8(start), _floor8(end)) for start, end in ranges]


def test_case_counts() -> None:
    counts = {
        key: len(CASES[key])
        for key in ("hash", "getBucketRange", "chooseVariation", "inNamespace", "getEqualWeights")
    }
    assert counts == {
        "hash": 15,
        "getBucketRange": 13,
        "chooseVariation": 13,
        "inNamespace": 16,
        "getEqualWeights": 6,
    }


@pytest.mark.parametrize(
    ("seed", "value", "version", "expected"),
    [pytest.param(*case, id=f"v{case[2]}-{case[0]!r}-{case[1]!r}") for case in CASES["hash"]],
)
def test_hash(seed: str, value: str, version: int, expected: float | None) -> None:
    assert gb_hash(seed, value, version) == expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [pytest.param(args, expected, id=name) for name, args, expected in CASES["getBucketRange"]],
)
def test_get_bucket_ranges(args: list[Any], expected: list[list[float]]) -> None:
    num_variations, coverage, weights = args
    ranges = get_bucket_ranges(num_variations, coverage, weights)
    assert _floor_ranges(ranges) == _floor_ranges(expected)


@pytest.mark.parametrize(
    ("n", "ranges", "expected"),
    [
        pytest.param(n, ranges, expected, id=name)
        for name, n, ranges, expected in CASES["chooseVariation"]
    ],
)
def test_choose_variation(n: float, ranges: list[Any], expected: int) -> None:
    assert choose_variation(n, [tuple(r) for r in ranges]) == expected


@pytest.mark.parametrize(
    ("hash_value", "namespace", "expected"),
    [pytest.param(h, ns, expected, id=name) for name, h, ns, expected in CASES["inNamespace"]],
)
def test_in_namespace(hash_value: str, namespace: list[Any], expected: bool) -> None:
    namespace_id, start, end = namespace
    assert in_namespace(hash_value, (namespace_id, start, end)) is expected


@pytest.mark.parametrize(
    ("num_variations", "expected"),
    [pytest.param(n, expected, id=str(n)) for n, expected in CASES["getEqualWeights"]],
)
def test_get_equal_weights(num_variations: int, expected: list[float]) -> None:
    weights = get_equal_weights(num_variations)
    assert [_floor8(w) for w in weights] == [_floor8(w) for w in expected]


# -- our own checks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0x811C9DC5),  # the FNV offset basis
        ("a", 0xE40C292C),  # published FNV-1a test vector
        ("foobar", 0xBF9CF968),  # published FNV-1a test vector
    ],
)
def test_fnv1a32_reference_vectors(text: str, expected: int) -> None:
    assert fnv1a32(text) == expected


def test_fnv1a32_hashes_utf16_code_units() -> None:
    # U+1F600 is the surrogate pair D83D DE00 in JavaScript: two code units, not one code point.
    by_units = 0x811C9DC5
    for unit in (0xD83D, 0xDE00):
        by_units = ((by_units ^ unit) * 0x01000193) & 0xFFFFFFFF
    assert fnv1a32("\U0001f600") == by_units
    assert fnv1a32("é") == ((0x811C9DC5 ^ 0xE9) * 0x01000193) & 0xFFFFFFFF


def test_hash_is_a_bucket_in_unit_interval() -> None:
    buckets = [gb_hash("exp-seed", f"visitor-{i}", 2) for i in range(2000)]
    assert all(b is not None and 0 <= b < 1 for b in buckets)
    share = sum(b is not None and b < 0.5 for b in buckets) / len(buckets)
    assert 0.45 < share < 0.55


def test_ranges_are_stable_when_coverage_changes() -> None:
    full = get_bucket_ranges(3, 1.0, [0.5, 0.25, 0.25])
    partial = get_bucket_ranges(3, 0.4, [0.5, 0.25, 0.25])
    assert [start for start, _ in full] == [start for start, _ in partial]
    assert all(in_range(start, r) for start, r in zip([0.0, 0.5, 0.75], full, strict=True))
    assert get_bucket_ranges(2, None) == [(0.0, 0.5), (0.5, 1.0)]


@pytest.mark.parametrize("text", ["a" * 64, "a" * 65, "é" * 200, "\U0001f600" * 40, "id-" * 30])
def test_fnv1a32_long_texts_match_the_unit_by_unit_definition(text: str) -> None:
    expected = 0x811C9DC5
    units = text.encode("utf-16-le", "surrogatepass")
    for i in range(0, len(units), 2):
        expected = (
            (expected ^ int.from_bytes(units[i : i + 2], "little")) * 0x01000193
        ) & 0xFFFFFFFF
    assert fnv1a32(text) == expected


@pytest.mark.parametrize(
    ("weights", "valid"),
    [
        ([0.09, 0.2, 0.3, 0.4], True),  # 0.99: inside the tolerance, used as given
        ([0.2, 0.2, 0.3, 0.31], True),  # 1.01
        ([0.4, 0.2, 0.3, 0.4], False),  # 1.3
        ([0.1, 0.2, 0.3, 0.38], False),  # 0.98
        ([0.5, 0.5], False),  # one per variation, or none
        ([1.2, -0.2, 0.0, 0.0], False),  # negative: growthbook-python refuses it
        ([math.nan, 0.5, 0.25, 0.25], False),
    ],
)
def test_weights_valid_is_growthbooks_rule(weights: list[float], valid: bool) -> None:
    assert weights_valid(4, weights) is valid
    assert _is_valid_weight_vector(weights, 4) is valid
    ranges = get_bucket_ranges(4, 1.0, weights)
    shares = [end - start for start, end in ranges]
    assert shares == pytest.approx(weights if valid else [0.25] * 4)
