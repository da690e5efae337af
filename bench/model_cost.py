"""Decision cost of model scoring, side by side (run by `python -m bench.decisions`).

The demo library's `home` slots with every variant at priority 0, so that each slot with two
or more eligible variants goes through conflict resolution (the model's worst case), and every
slot asking for model choice. The same 400 synthetic visitors as the
GrowthBook comparison are decided three ways, a fresh `DecisionEnv` per page view as in a request:

- **rules**: no model (the baseline);
- **in process**: a compiled artifact (`assembly.learning`: every slot and variant, one weight
  per feature over the visitors' 8 features) evaluated on the hot path: the visitor's sparse
  vector read once per page, a dot product per tied variant;
- **precomputed**: the alternative of computing scores off the hot path when the profile
  changes and storing them with the profile: the page view decodes the stored scores (JSON,
  as the profile read would) and looks them up.

To time the model's cost alone, the two ways run with a threshold never reached (1.0) and
the model term weighted 0: every conflict evaluates the model, yet the rules decide, and the
answers are checked to be the rules'. The same is timed on the demo's own priorities (few
conflicts, so the model is rarely evaluated: the usual case). A last run lets the model choose
(threshold 0.1), for information: its decisions differ (and skip the rule score), so it is not
the cost measure.

Reported: microseconds per slot decision, the fastest of 15 interleaved rounds of 3 runs each
(on a shared machine the fastest run is the one least disturbed), and the ratio to rules (goal:
at most 1.25x).
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from assembly.decisions.rules import DecisionEnv, decide
from assembly.decisions.scoring import Scorer
from assembly.decisions.visitor import Visitor
from assembly.learning.artifact import decode, encode
from assembly.learning.compiled import CompiledModel, Ranked, VisitorScores
from integration.model import Slot, Variant

GOAL = 1.25
ROUNDS = 15
FEATURES = [
    {"path": "audiences:cart_abandoners", "kind": "audience"},
    {"path": "audiences:video_lovers", "kind": "audience"},
    {"path": "audiences:newsletter", "kind": "audience"},
    {"path": "audiences:vip", "kind": "audience"},
    {"path": "signals.visits", "kind": "number"},
    {"path": "signals.cartAbandoned", "kind": "bool"},
    {"path": "signals.engagement.running", "kind": "number"},
    {"path": "signals.dwell.sku-1001", "kind": "number"},
]


class Precomputed(VisitorScores):
    """Scores computed when the profile changed, stored with it: a lookup on the hot path."""

    __slots__ = ("stored",)

    def __init__(self, model: CompiledModel, visitor: Visitor, stored: bytes) -> None:
        super().__init__(model, visitor)
        self.stored: dict[str, dict[str, float]] = orjson.loads(stored)

    def rank(self, slot_key: str, tied: Sequence[tuple[Variant, object]]) -> Ranked | None:
        slot = self.stored.get(slot_key)
        if slot is None:
            return None
        probs: list[float | None] = []
        best = runner = -1
        p1 = p2 = -1.0
        complete = True
        for i, (variant, _) in enumerate(tied):  # the same one pass as `VisitorScores.rank`
            p = slot.get(variant.key)
            probs.append(p)
            if p is None:
                complete = False
            elif p > p1:
                best, runner, p1, p2 = i, best, p, p1
            elif p > p2:
                runner, p2 = i, p
        if not complete or runner < 0 or p1 <= 0:
            return Ranked(probs)
        return Ranked(probs, best, runner, (p1 - p2) / p1)


@dataclass(frozen=True, slots=True)
class ModelCostResult:
    slots: int
    tied_slots: int
    features: int
    rules_per_slot_us: float
    in_process_per_slot_us: float
    precomputed_per_slot_us: float
    choosing_per_slot_us: float
    in_process_ratio: float
    precomputed_ratio: float
    model_choices: int
    kept: str
    published_rules_per_slot_us: float
    published_in_process_per_slot_us: float
    published_ratio: float


def tied_slots(slots: Sequence[Slot], threshold: float | None = 0.1) -> list[Slot]:
    """Every variant at priority 0 and model choice asked (experiment arms left as they are)."""
    out = []
    for slot in slots:
        variants = tuple(
            v if v.experiment is not None else dataclasses.replace(v, priority=0)
            for v in slot.variants
        )
        out.append(dataclasses.replace(slot, variants=variants, model_threshold=threshold))
    return out


def bench_model(slots: Sequence[Slot], seed: int = 11) -> CompiledModel:
    rng = random.Random(seed)
    variants = {
        slot.key: {
            v.key: {
                "intercept": rng.uniform(-3, -1),
                "weights": [rng.uniform(-1, 1) for _ in FEATURES],
                "exposures": 1000,
                "conversions": 80,
            }
            for v in slot.variants
        }
        for slot in slots
    }
    body = {
        "version": 1,
        "trainedAt": 0.0,
        "goal": "Order Completed",
        "attributionSeconds": 86400.0,
        "features": FEATURES,
        "slots": {k: {"auc": None, "exposures": 0, "variants": v} for k, v in variants.items()},
    }
    return CompiledModel(decode(encode(body)))


def _fastest_seconds(run: Callable[[], object], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return min(samples)


def run_model_cost(
    slots: Sequence[Slot],
    visitors: Sequence[Visitor],
    env: DecisionEnv,
    now: datetime,
    repeats: int = 3,
) -> ModelCostResult:
    # Overhead: the model is evaluated for every conflict (threshold 1.0 is never reached, the
    # model term weighs 0), so the decisions stay the rules' and only the model's cost is added.
    evaluated = tied_slots(slots, 1.0)
    choosing = tied_slots(slots, 0.1)
    model = bench_model(evaluated)
    silent = dataclasses.replace(env, scorer=Scorer(1.0, 1.0, 3600.0, model_weight=0.0))
    stored = [
        orjson.dumps(
            {
                s.key: {v.key: VisitorScores(model, x).score(s.key, v.key) for v in s.variants}
                for s in evaluated
            }
        )
        for x in visitors
    ]

    def pages(
        scores: Callable[[int, Visitor], VisitorScores | None],
        decided: Sequence[Slot] = evaluated,
        base: DecisionEnv = silent,
    ) -> Callable[[], Any]:
        def run() -> list[Any]:
            out = []
            for i, visitor in enumerate(visitors):
                visitor._matches.clear()  # a cold audience memo, as for a new page view
                page_env = dataclasses.replace(base, model=scores(i, visitor))
                out.append([decide(s, visitor, now, None, page_env) for s in decided])
            return out

        return run

    rules = pages(lambda i, v: None)
    in_process = pages(lambda i, v: VisitorScores(model, v))
    precomputed = pages(lambda i, v: Precomputed(model, v, stored[i]))
    choosing_run = pages(lambda i, v: VisitorScores(model, v), choosing, env)
    # The demo's own priorities (few conflicts), every slot asking for model choice.
    published = [dataclasses.replace(s, model_threshold=1.0) for s in slots]
    published_rules = pages(lambda i, v: None, published)
    published_model = pages(lambda i, v: VisitorScores(model, v), published)
    served = [[d.variant for d in p] for p in rules()]
    for run in (in_process, precomputed):
        assert [[d.variant for d in p] for p in run()] == served, "the rules must still decide"
    choices = sum("model" in d.reason for page in choosing_run() for d in page)
    decisions = len(visitors) * len(slots)
    timings: dict[str, list[float]] = {}
    runs = (
        ("rules", rules),
        ("in", in_process),
        ("pre", precomputed),
        ("choose", choosing_run),
        ("pub rules", published_rules),
        ("pub model", published_model),
    )
    for _ in range(ROUNDS):  # interleaved: a noisy neighbour hurts all of them alike
        for name, run in runs:
            timings.setdefault(name, []).append(_fastest_seconds(run, repeats))
    base, inner, pre, choose = (min(timings[n]) for n in ("rules", "in", "pre", "choose"))
    pub_rules, pub_model = min(timings["pub rules"]), min(timings["pub model"])
    return ModelCostResult(
        slots=len(slots),
        tied_slots=sum(1 for s in evaluated if len(s.variants) >= 2),
        features=len(FEATURES),
        rules_per_slot_us=base / decisions * 1e6,
        in_process_per_slot_us=inner / decisions * 1e6,
        precomputed_per_slot_us=pre / decisions * 1e6,
        choosing_per_slot_us=choose / decisions * 1e6,
        in_process_ratio=inner / base,
        precomputed_ratio=pre / base,
        model_choices=choices,
        kept="in process" if inner <= pre else "precomputed",
        published_rules_per_slot_us=pub_rules / decisions * 1e6,
        published_in_process_per_slot_us=pub_model / decisions * 1e6,
        published_ratio=pub_model / pub_rules,
    )


def report(result: ModelCostResult) -> str:
    worst = "met" if result.in_process_ratio <= GOAL else "NOT met"
    usual = "met" if result.published_ratio <= GOAL else "NOT met"
    return (
        f"\nmodel scoring: {result.slots} slots ({result.tied_slots} with 2+ variants, all at one"
        f" priority), {result.features} features; the model evaluated on every conflict, the"
        f" rules still deciding\n"
        f"  rules only          {result.rules_per_slot_us:8.2f} us per slot decision\n"
        f"  model in process    {result.in_process_per_slot_us:8.2f} us  "
        f"({result.in_process_ratio:.3f}x; goal <= {GOAL}x: {worst})\n"
        f"  model precomputed   {result.precomputed_per_slot_us:8.2f} us  "
        f"({result.precomputed_ratio:.3f}x, scores decoded from the stored profile)\n"
        f"  model choosing      {result.choosing_per_slot_us:8.2f} us  (modelThreshold 0.1:"
        f" the model chose {result.model_choices} slot decisions, skipping the rule score)\n"
        f"  faster of the two ways: {result.kept}\n"
        f"  the demo's own priorities (few conflicts), model in process:"
        f" {result.published_in_process_per_slot_us:.2f} us against"
        f" {result.published_rules_per_slot_us:.2f} us ({result.published_ratio:.3f}x;"
        f" goal <= {GOAL}x: {usual})"
    )
