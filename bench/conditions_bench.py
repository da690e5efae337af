"""Micro-benchmark: a compiled condition versus ``eval_condition`` (compile + evaluate per call).

Not a test. Run from the repository root::

    uv run python -m bench.conditions_bench [--loops 20000]

It times a realistic variant condition (audience membership, a behavioural signal, a regex on the
page path, a case-insensitive country list, an app version, a consent flag) against a visitor
context shaped like the assemble request's (``attributes, traits, audiences, signals, page,
session``), on a matching and on a non-matching visitor, and prints microseconds per evaluation.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from assembly.targeting.compiler import compile_condition, eval_condition

CONDITION: dict[str, Any] = {
    "$and": [
        {"audiences": {"$in": ["vip", "returning-buyer"]}},
        {"signals.dwell.sku-1001": {"$gt": 30}},
        {"$or": [{"page.path": {"$regex": "^/products/"}}, {"signals.cartAbandoned": True}]},
        {"attributes.country": {"$ini": ["us", "ca", "gb"]}},
        {"attributes.appVersion": {"$vgte": "2.3.0"}},
        {"session.pageviews": {"$gte": 2}},
    ],
    "traits.consent.personalization": {"$ne": False},
}

MATCHING: dict[str, Any] = {
    "attributes": {"id": "v-81f2", "country": "US", "appVersion": "2.4.1", "device": "mobile"},
    "traits": {"plan": "gold", "consent": {"personalization": True}},
    "audiences": ["newsletter", "vip"],
    "signals": {
        "dwell": {"sku-1001": 42.5, "sku-2002": 3.0},
        "cartAbandoned": False,
        "engagement": {"shoes": 0.7, "bags": 0.1},
        "visits": 7,
    },
    "page": {"path": "/products/sku-1001", "locale": "en-US"},
    "session": {"id": "s-19", "pageviews": 4},
}
NOT_MATCHING: dict[str, Any] = {**MATCHING, "audiences": ["newsletter"]}  # fails the first test


def _per_call_us(fn: Callable[[], object], loops: int, repeats: int = 5) -> float:
    """Best of ``repeats`` runs, in microseconds per call."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        best = min(best, time.perf_counter() - start)
    return best / loops * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", type=int, default=20_000, help="evaluations per timing run")
    loops = parser.parse_args().loops

    compiled = compile_condition(CONDITION)
    expected = (True, False, True, False)
    got = (
        compiled(MATCHING),
        compiled(NOT_MATCHING),
        eval_condition(MATCHING, CONDITION),
        eval_condition(NOT_MATCHING, CONDITION),
    )
    if got != expected:
        raise SystemExit(f"benchmark condition misbehaves: {got} != {expected}")

    rows = [
        ("compiled, matching visitor", lambda: compiled(MATCHING)),
        ("compiled, non-matching visitor", lambda: compiled(NOT_MATCHING)),
        ("eval_condition, matching visitor", lambda: eval_condition(MATCHING, CONDITION)),
        ("compile_condition only", lambda: compile_condition(CONDITION)),
    ]
    print(f"{'case':<36} {'µs/eval':>9}   ({loops} loops, best of 5)")
    timings = {name: _per_call_us(fn, loops) for name, fn in rows}
    for name, us in timings.items():
        print(f"{name:<36} {us:>9.2f}")
    speedup = timings["eval_condition, matching visitor"] / timings["compiled, matching visitor"]
    print(f"compiled is {speedup:.1f}x faster than eval_condition on this condition")


if __name__ == "__main__":
    main()
