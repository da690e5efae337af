"""Benchmark of per-slot decisions against growthbook-python evaluating equivalent rules.

Run from the repository root (`uv run python -m bench.decisions`); not part of the test suite.

Per-slot decisions (in process)
    The demo library's six `home` slots, translated to GrowthBook features: one feature per slot
    whose rules are the slot's variants in priority order (a force rule whose condition is "any
    of the audiences" AND the variant's conditions AND its schedule AND its frequency cap, a
    percentage rollout as the rule's coverage, an experiment's arms as an experiment rule with
    the same seed, weights, coverage, namespace and hash version 2). 400 synthetic visitors
    (audiences, signals, devices, pages) are decided by both: ours with
    `assembly.decisions.rules.decide` (a fresh `Visitor` per page view, as in a request;
    building it is timed separately), and
    GrowthBook with one `GrowthBook` instance, `set_attributes` per page view and
    `eval_feature` per slot (its most favourable use: features parsed once). Both must agree
    on every slot. Reported: microseconds per slot decision (median of 7 repeats) and the ratio
    (goal: ours <= 1/3 of GrowthBook's).

Kill switch propagation (skipped with `--skip-propagation`)
    Two `python cli.py serve` processes on a private redis-server (never port 6379). A switch
    set through replica A's admin API is timed until replica B answers with it (B polled
    back-to-back over HTTP), alternately set and lifted, `--flips` times. Goal: <= 100 ms.

Results are printed and written to `bench/results/decisions-<UTC timestamp>.json`.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from growthbook import GrowthBook

from assembly.decisions.rules import DecisionEnv, decide
from assembly.decisions.state import DecisionState, session_tag
from assembly.decisions.visitor import Visitor, build_visitor
from assembly.ports import Profile
from assembly.schemas import AssembleRequest
from bench.assemble import clean_env, demo_library, http, redis_server, spawned, wait_ready
from bench.contextual_cost import ContextualCostResult, run_contextual_cost
from bench.contextual_cost import report as contextual_report
from bench.model_cost import ModelCostResult, report, run_model_cost
from bench.report import save_result
from core.logging import configure_logging
from integration.model import Audience, Slot, Variant
from tests.support.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
REPEATS = 7
VISITORS = 400
GOAL = 1 / 3
PROPAGATION_GOAL_MS = 100.0
BASELINE = "baseline"


# ---------------------------------------------------------------- the equivalent GrowthBook rules


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _audience_condition(audience: Audience) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    if audience.segments:
        parts.append({"audiences": {"$in": sorted(audience.segments)}})
    if audience.personas:
        parts.append({"traits.personas": {"$in": sorted(audience.personas)}})
    if audience.condition is not None:
        parts.append(dict(audience.condition.spec if audience.condition else {}))
    return {"$and": parts}


def variant_condition(variant: Variant) -> dict[str, Any]:
    """Everything `assembly.decisions.rules.qualifies` and the cap check test, as one GrowthBook
    condition."""
    parts: list[dict[str, Any]] = []
    if variant.audiences:
        parts.append({"$or": [_audience_condition(a) for a in variant.audiences]})
    if variant.condition is not None:
        parts.append(dict(variant.condition.spec if variant.condition else {}))
    if variant.start_at is not None:
        parts.append({"now": {"$gte": _iso(variant.start_at)}})
    if variant.end_at is not None:
        parts.append({"now": {"$lt": _iso(variant.end_at)}})
    if variant.frequency_cap is not None:
        parts.append({f"caps.{variant.key}": {"$lt": variant.frequency_cap.max}})
    return {"$and": parts}


def _experiment_rule(slot: Slot, variant: Variant) -> dict[str, Any]:
    experiment = variant.experiment
    assert experiment is not None
    arms = slot.arms[experiment.key].variants  # the slot list's order, as bucketed
    weights = [experiment.control_weight, *(a.weight for a in arms)]
    rule: dict[str, Any] = {
        "key": experiment.key,
        "variations": [BASELINE, *(a.key for a in arms)],
        "coverage": experiment.coverage,
        "hashAttribute": experiment.hash_attribute,
        "seed": experiment.seed,
        "hashVersion": 2,
        "condition": {"$or": [variant_condition(a) for a in arms]},
    }
    if all(w is not None for w in weights):  # as given: GrowthBook splits bad sums equally
        rule["weights"] = [w for w in weights if w is not None]
    if experiment.namespace is not None:
        ns = experiment.namespace
        rule["namespace"] = [ns.id, ns.start, ns.end]
    return rule


def slot_feature(slot: Slot) -> dict[str, Any]:
    rules: list[dict[str, Any]] = []
    done: set[str] = set()
    for variant in slot.variants:
        if not variant.enabled:
            continue
        if variant.experiment is not None:
            if variant.experiment.key not in done and variant.experiment.status == "running":
                done.add(variant.experiment.key)
                rules.append(_experiment_rule(slot, variant))
            continue
        rule: dict[str, Any] = {"condition": variant_condition(variant), "force": variant.key}
        if variant.rollout is not None:
            rule.update(
                coverage=variant.rollout,
                hashAttribute="id",
                seed=f"rollout:{variant.key}",
                hashVersion=2,
            )
        rules.append(rule)
    return {"defaultValue": BASELINE, "rules": rules}


# ---------------------------------------------------------------- synthetic visitors


@dataclass(frozen=True, slots=True)
class Case:
    request: AssembleRequest
    profile: Profile


def synthetic_visitors(count: int, seed: int = 7) -> list[Case]:
    rng = random.Random(seed)
    segments = ["cart_abandoners", "video_lovers", "newsletter", "vip"]
    cases = []
    for i in range(count):
        audiences = frozenset(s for s in segments if rng.random() < 0.3)
        signals: dict[str, Any] = {}
        if rng.random() < 0.6:
            signals["visits"] = rng.randint(1, 9)
        if rng.random() < 0.3:
            signals["dwell"] = {"sku-1001": rng.randint(0, 90)}
        if rng.random() < 0.3:
            signals["engagement"] = {"running": round(rng.uniform(0, 10), 2)}
        if rng.random() < 0.2:
            signals["cartAbandoned"] = True
        body = {
            "template": "home",
            "user": {"id": f"visitor-{i}"},
            "sessionId": f"s-{i}",
            "context": {
                "attributes": {
                    "device": rng.choice(["mobile", "desktop"]),
                    "language": rng.choice(["en-US", "de-DE"]),
                },
                "page": {"path": "/", "search": rng.choice(["", "?utm_campaign=summer-run"])},
                "traits": {"personas": ["runner"]} if rng.random() < 0.3 else {},
            },
        }
        cases.append(
            Case(
                AssembleRequest.model_validate(body), Profile(audiences=audiences, signals=signals)
            )
        )
    return cases


def gb_attributes(visitor: Visitor, slots: Sequence[Slot]) -> dict[str, Any]:
    """The visitor document plus what our engine reads elsewhere: the id, the time, caps."""
    caps = {v.key: 0 for s in slots for v in s.variants if v.frequency_cap is not None}
    return {**visitor.doc, "id": visitor.hash_value("id"), "now": _iso(NOW), "caps": caps}


# ---------------------------------------------------------------- timing


def _median_seconds(run: Callable[[], object]) -> float:
    run()  # warm up
    samples = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def ours_pages(cases: Sequence[Case], slots: Sequence[Slot], env: DecisionEnv) -> list[list[str]]:
    answers = []
    for case in cases:
        visitor = build_visitor(case.request, case.profile)
        answers.append(
            [
                (d.variant.key if d.variant else BASELINE)
                for d in (decide(s, visitor, NOW, None, env) for s in slots)
            ]
        )
    return answers


def _ours_decisions_only(
    visitors: Sequence[Visitor], slots: Sequence[Slot], env: DecisionEnv
) -> None:
    for visitor in visitors:
        visitor._matches.clear()  # a cold audience memo, as for a new page view
        for slot in slots:
            decide(slot, visitor, NOW, None, env)


def gb_pages(
    gb: GrowthBook, attributes: Sequence[dict[str, Any]], keys: Sequence[str]
) -> list[list[str]]:
    answers = []
    for attrs in attributes:
        gb.set_attributes(attrs)
        answers.append([str(gb.eval_feature(k).value) for k in keys])
    return answers


@dataclass(frozen=True, slots=True)
class SlotResult:
    visitors: int
    slots: int
    ours_per_slot_us: float
    ours_build_visitor_us: float
    growthbook_per_slot_us: float
    growthbook_set_attributes_us: float
    ratio: float
    agreement: float
    disagreements: list[str]


def run_slots() -> SlotResult:
    library = demo_library()
    slots = library.templates["home"].slots
    features = {slot.key: slot_feature(slot) for slot in slots}
    keys = list(features)
    cases = synthetic_visitors(VISITORS)
    env = DecisionEnv(state=DecisionState(session=session_tag("bench")), now_ts=NOW.timestamp())
    visitors = [build_visitor(c.request, c.profile) for c in cases]
    attributes = [gb_attributes(v, slots) for v in visitors]
    gb = GrowthBook(features=features)
    ours = ours_pages(cases, slots, env)
    theirs = gb_pages(gb, attributes, keys)
    disagreements = [
        f"{c.request.user.id} {k}: ours {a} growthbook {b}"
        for c, mine, other in zip(cases, ours, theirs, strict=True)
        for k, a, b in zip(keys, mine, other, strict=True)
        if a != b
    ]
    decisions = len(cases) * len(slots)
    ours_s = _median_seconds(functools.partial(_ours_decisions_only, visitors, slots, env))
    build_s = _median_seconds(lambda: [build_visitor(c.request, c.profile) for c in cases])

    def gb_decisions() -> None:
        for attrs in attributes:
            gb.set_attributes(attrs)
            for k in keys:
                gb.eval_feature(k)

    gb_s = _median_seconds(gb_decisions)

    def gb_attributes_only() -> None:
        for attrs in attributes:
            gb.set_attributes(attrs)

    set_s = _median_seconds(gb_attributes_only)
    gb_eval_s = max(gb_s - set_s, 0.0)
    return SlotResult(
        visitors=len(cases),
        slots=len(slots),
        ours_per_slot_us=ours_s / decisions * 1e6,
        ours_build_visitor_us=build_s / len(cases) * 1e6,
        growthbook_per_slot_us=gb_eval_s / decisions * 1e6,
        growthbook_set_attributes_us=set_s / len(cases) * 1e6,
        ratio=(ours_s / gb_eval_s) if gb_eval_s else float("inf"),
        agreement=1 - len(disagreements) / decisions,
        disagreements=disagreements[:10],
    )


def model_cost() -> ModelCostResult:
    """Per-slot decisions with model scoring on, in process and precomputed, against rules."""
    library = demo_library()
    cases = synthetic_visitors(VISITORS)
    env = DecisionEnv(state=DecisionState(session=session_tag("bench")), now_ts=NOW.timestamp())
    visitors = [build_visitor(c.request, c.profile) for c in cases]
    return run_model_cost(library.templates["home"].slots, visitors, env, NOW)


def contextual_cost() -> ContextualCostResult:
    """Per-slot decisions of a contextual bandit against a plain one (new and sticky visitors)."""
    library = demo_library()
    cases = synthetic_visitors(VISITORS)
    env = DecisionEnv(state=DecisionState(session=session_tag("bench")), now_ts=NOW.timestamp())
    visitors = [build_visitor(c.request, c.profile) for c in cases]
    return run_contextual_cost(library.templates["home"].slots, visitors, env, NOW)


# ---------------------------------------------------------------- kill switch propagation

TOKEN = "bench-admin-token"
CART = orjson.dumps({"template": "home", "context": {"audiences": ["cart_abandoners"]}})


def _admin(method: str, url: str, reason: str) -> int:
    import urllib.request

    request = urllib.request.Request(
        url,
        data=orjson.dumps({"reason": reason}),
        method=method,
        headers={"content-type": "application/json", "authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return int(response.status)


def _hero_reason(base: str) -> str:
    status, body = http("POST", f"{base}/v1/assemble", CART)
    if status != 200:
        raise RuntimeError(f"assemble answered {status}")
    return str(orjson.loads(body)["slots"][0]["reason"])


@dataclass(frozen=True, slots=True)
class PropagationResult:
    flips: int
    median_ms: float
    max_ms: float
    samples_ms: list[float]


def run_propagation(flips: int) -> PropagationResult:
    switched = "kill switch: slot home.hero (admin)"
    with redis_server() as server, tempfile.TemporaryDirectory(prefix="mb-bench-") as tmp:
        env = clean_env(REDIS_URL=server.url, BRIDGE_ADMIN_TOKEN=TOKEN, BRIDGE_LOG_LEVEL="warning")
        bases = []
        processes = []
        for name in ("a", "b"):
            port = free_port()
            command = [
                sys.executable,
                "cli.py",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ]
            processes.append(spawned(command, env, Path(tmp) / f"{name}.log"))
            bases.append(f"http://127.0.0.1:{port}")
        with processes[0], processes[1]:
            for base, name in zip(bases, ("a", "b"), strict=True):
                wait_ready(f"{base}/readyz", Path(tmp) / f"{name}.log")
            a, b = bases
            samples = []
            for flip in range(flips):
                setting = flip % 2 == 0
                started = time.perf_counter()
                _admin(
                    "POST" if setting else "DELETE",
                    f"{a}/admin/kill-switches/slot/home.hero",
                    f"bench {flip}",
                )
                deadline = started + 5
                while (_hero_reason(b) == switched) != setting:
                    if time.perf_counter() > deadline:
                        raise RuntimeError("replica B never saw the change")
                samples.append((time.perf_counter() - started) * 1000)
    return PropagationResult(
        flips, statistics.median(samples), max(samples), [round(s, 2) for s in samples]
    )


# ---------------------------------------------------------------- report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.decisions", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--skip-propagation", action="store_true", help="in-process timings only")
    parser.add_argument("--flips", type=int, default=20, help="kill switch flips to time (20)")
    args = parser.parse_args(argv)
    configure_logging("warning", json=True)
    print("per-slot decisions: ours vs growthbook-python ...", flush=True)
    slots = run_slots()
    verdict = "met" if slots.ratio <= GOAL else "NOT met"
    print(
        f"\n{slots.visitors} visitors x {slots.slots} slots, median of {REPEATS} repeats\n"
        f"  ours        {slots.ours_per_slot_us:8.2f} us per slot decision"
        f"   (+ {slots.ours_build_visitor_us:.2f} us per page to build the visitor)\n"
        f"  growthbook  {slots.growthbook_per_slot_us:8.2f} us per slot decision"
        f"   (+ {slots.growthbook_set_attributes_us:.2f} us per page for set_attributes)\n"
        f"  ratio ours / growthbook: {slots.ratio:.3f}  (goal <= {GOAL:.3f}: {verdict})\n"
        f"  same answer on {slots.agreement:.1%} of slot decisions"
    )
    for line in slots.disagreements:
        print(f"    differs: {line}")
    model = model_cost()
    print(report(model), flush=True)
    contextual = contextual_cost()
    print(contextual_report(contextual), flush=True)
    propagation = None
    if not args.skip_propagation:
        print(
            f"\nkill switch propagation between two replicas ({args.flips} flips) ...", flush=True
        )
        propagation = run_propagation(args.flips)
        verdict = "met" if propagation.max_ms <= PROPAGATION_GOAL_MS else "NOT met"
        print(
            f"  median {propagation.median_ms:.1f} ms, max {propagation.max_ms:.1f} ms "
            f"(goal <= {PROPAGATION_GOAL_MS:.0f} ms on every replica: {verdict})"
        )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    document = {
        "timestamp": stamp,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "slots": asdict(slots),
        "goalRatio": GOAL,
        "propagation": asdict(propagation) if propagation else None,
        "modelScoring": asdict(model),
        "contextualBandit": asdict(contextual),
    }
    path = save_result("decisions", stamp, document)
    print(f"\nresults: {path.relative_to(ROOT)}")
    return 0 if slots.agreement == 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
