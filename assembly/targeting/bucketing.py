"""GrowthBook-compatible hashing and bucketing (``packages/sdk-js/src/util.ts``).

Experiments bucket visitors exactly as GrowthBook does, so that assignments can be checked against
its documented algorithm and its conformance cases (``tests/assembly/targeting/test_bucketing.py``):

* ``fnv1a32(s)``: 32-bit FNV-1a over the UTF-16 code units of ``s``, like JavaScript's
  ``charCodeAt`` (a character outside the BMP counts as two surrogate units).
* ``gb_hash(seed, value, version)``: a float in ``[0, 1)``. Version 2 (the default for new
  experiments) is ``fnv1a32(str(fnv1a32(seed + value))) % 10000 / 10000``; version 1 (legacy, kept
  for old experiments) is ``fnv1a32(value + seed) % 1000 / 1000``; other versions give None.
* ``get_bucket_ranges(n, coverage, weights)``: one ``[start, end)`` range per variation.
  Coverage is clamped to ``[0, 1]``; weights of the wrong length or not summing to 1 (within 0.01)
  become equal weights. Each range starts at the cumulative weight, so changing coverage never
  moves a visitor from one variation to another.
* ``choose_variation(n, ranges)``: the index of the range holding ``n`` (``start <= n < end``),
  or -1 when no range does.
* ``in_namespace(hash_value, (namespace_id, start, end))``: mutual exclusion between experiments,
  using a version-1 hash seeded with ``"__" + namespace_id``.
* ``get_equal_weights(n)``: ``n`` weights of ``1 / n`` (none when ``n <= 0``).
* ``weights_valid(n, weights)``: whether GrowthBook buckets on ``weights`` as given (one finite,
  non-negative weight per variation, summing to 1 within 0.01) rather than an equal split.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence
from functools import lru_cache
from typing import Final

__all__ = [
    "choose_variation",
    "fnv1a32",
    "gb_hash",
    "get_bucket_ranges",
    "get_equal_weights",
    "in_namespace",
    "in_range",
    "weights_valid",
]

_FNV_OFFSET_BASIS: Final = 0x811C9DC5
_FNV_PRIME: Final = 0x01000193
_UINT32_MASK: Final = 0xFFFFFFFF
_LAZY_REDUCTION_UNITS: Final = 64
_MIN_WEIGHT_SUM: Final = 0.99
_MAX_WEIGHT_SUM: Final = 1.01
WEIGHT_SUM_RANGE: Final = (_MIN_WEIGHT_SUM, _MAX_WEIGHT_SUM)


def _utf16_code_units(text: str) -> bytes | array[int]:
    """The UTF-16 code units of ``text``, as JavaScript's ``charCodeAt`` sees them."""
    if text.isascii():
        return text.encode("ascii")
    units = array("H", text.encode("utf-16-le", "surrogatepass"))
    if sys.byteorder == "big":
        units.byteswap()
    return units


def fnv1a32(text: str) -> int:
    """32-bit FNV-1a hash of ``text``'s UTF-16 code units (GrowthBook's ``hashFnv32a``)."""
    return _fnv_from(_FNV_OFFSET_BASIS, text)


def _fnv_from(state: int, text: str) -> int:
    """Continue FNV-1a from ``state`` over ``text`` (``a + b`` hashes as ``b`` after ``a``).

    Short texts (ids, seeds) skip the reduction modulo 2**32 until the end: XOR with a code
    unit touches only the low 16 bits and multiplication commutes with the reduction, so the
    low 32 bits come out the same, at about two thirds of the cost.
    """
    value = state
    units = _utf16_code_units(text)
    prime = _FNV_PRIME
    if len(units) <= _LAZY_REDUCTION_UNITS:
        for unit in units:
            value = (value ^ unit) * prime
        return value & _UINT32_MASK
    mask = _UINT32_MASK
    for unit in units:
        value = ((value ^ unit) * prime) & mask
    return value


@lru_cache(maxsize=4096)
def _seed_state(seed: str) -> int:
    """The FNV-1a state after an experiment's seed: version-2 hashes start from it."""
    return fnv1a32(seed)


def gb_hash(seed: str, value: str, version: int) -> float | None:
    """GrowthBook's ``hash``: a bucket in ``[0, 1)`` for ``value``, or None for unknown versions."""
    if version == 2:
        return (fnv1a32(str(_fnv_from(_seed_state(seed), value))) % 10000) / 10000
    if version == 1:
        return (fnv1a32(value + seed) % 1000) / 1000
    return None


def get_equal_weights(num_variations: int) -> list[float]:
    """``num_variations`` equal weights summing to 1; empty when ``num_variations <= 0``."""
    if num_variations <= 0:
        return []
    return [1 / num_variations] * num_variations


def get_bucket_ranges(
    num_variations: int,
    coverage: float | None = 1.0,
    weights: Sequence[float] | None = None,
) -> list[tuple[float, float]]:
    """One ``(start, end)`` bucket range per variation (GrowthBook's ``getBucketRanges``)."""
    coverage = _clamp_coverage(1.0 if coverage is None else coverage)
    weights = _valid_weights(num_variations, weights)
    ranges: list[tuple[float, float]] = []
    cumulative = 0.0
    for weight in weights:
        start = cumulative
        cumulative += weight
        ranges.append((start, start + coverage * weight))
    return ranges


def _clamp_coverage(coverage: float) -> float:
    if coverage < 0:
        return 0.0
    if coverage > 1:
        return 1.0
    return coverage


def _valid_weights(num_variations: int, weights: Sequence[float] | None) -> Sequence[float]:
    """``weights`` if one per variation summing to 1 (within 0.01), else equal weights."""
    if weights is None or not weights_valid(num_variations, weights):
        return get_equal_weights(num_variations)
    return weights


def weights_valid(num_variations: int, weights: Sequence[float]) -> bool:
    """One finite, non-negative weight per variation, summing to 1 within 0.01 (GrowthBook)."""
    if len(weights) != num_variations:
        return False
    total = 0.0
    for weight in weights:  # left to right, as JavaScript's reduce (no compensated summation)
        if not 0 <= weight < float("inf"):
            return False
        total += weight
    return _MIN_WEIGHT_SUM <= total <= _MAX_WEIGHT_SUM


def in_range(n: float, bucket_range: tuple[float, float]) -> bool:
    """Whether ``n`` lies in the half-open range ``[start, end)``."""
    return bucket_range[0] <= n < bucket_range[1]


def choose_variation(n: float, ranges: Sequence[tuple[float, float]]) -> int:
    """Index of the first range holding the bucket ``n``; -1 when none does (not covered)."""
    for index, (start, end) in enumerate(ranges):
        if start <= n < end:
            return index
    return -1


def in_namespace(hash_value: str, namespace: tuple[str, float, float]) -> bool:
    """Whether ``hash_value`` falls in the ``[start, end)`` slice of the namespace."""
    namespace_id, start, end = namespace
    n = gb_hash("__" + namespace_id, hash_value, 1)
    return n is not None and start <= n < end
