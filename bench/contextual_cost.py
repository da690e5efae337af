"""Decision cost of a contextual bandit beside a plain one (run by `python -m bench.decisions`).

The demo library's `home` slots, its experiment (`home.cta`) at full coverage and without a
namespace, so that every visitor who reaches it is bucketed. The same 400 synthetic visitors
as the GrowthBook comparison are decided, a fresh `DecisionEnv` per page view as in a request:

- **bandit**: `mode: bandit` with stored weights (the arms reweighted once, then bucketing);
- **contextual**: `mode: contextual` with fitted parameters in memory: the policy encodes the
  visitor (the ranking model's 8 features of `bench.model_cost`) and draws one number per arm
  (a sparse dot product, a sparse quadratic form, a hash and an inverse normal);
- **sticky** (both modes): the visitors already assigned (their decision state holds the arm):
  the policy is not run, as for every later page view of a visitor.

Reported: microseconds per slot decision over the page's slots (every visitor), and per
decision of the experiment's slot for the visitors who reach the experiment (the policy's own
cost); the fastest of interleaved rounds, as `bench.model_cost`; the ratios to bandit.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from assembly.decisions.rules import DecisionEnv, decide
from assembly.decisions.state import DecisionState
from assembly.decisions.visitor import Visitor
from assembly.experiments.allocation import Allocation, Allocations
from assembly.experiments.contextual import ArmModel, Policy
from assembly.learning.features import Encoder, FeatureSpec
from bench.model_cost import FEATURES
from core.redis import Keys
from integration.model import Arms, ExperimentMode, Slot

ROUNDS = 15


@dataclass(frozen=True, slots=True)
class ContextualCostResult:
    slots: int
    reached: float
    """Share of page views whose experiment slot was decided by the experiment."""
    features: int
    arms: int
    bandit_page_per_slot_us: float
    contextual_page_per_slot_us: float
    bandit_slot_us: float
    contextual_slot_us: float
    bandit_sticky_slot_us: float
    contextual_sticky_slot_us: float
    page_ratio: float
    slot_ratio: float
    sticky_ratio: float


def _with_mode(slot: Slot, mode: ExperimentMode) -> Slot:
    if not slot.arms:
        return slot
    arms = {
        key: dataclasses.replace(
            a,
            experiment=dataclasses.replace(a.experiment, mode=mode, coverage=1.0, namespace=None),
        )
        for key, a in slot.arms.items()
    }
    return dataclasses.replace(slot, arms=arms)


def _rebucketed(arms: Arms) -> Allocation:
    count = len(arms.labels)
    return Allocation(1, 0.0, arms.labels, tuple([1 / count] * count))


def _policy(arms: Arms, seed: int = 5) -> Policy:
    rng = random.Random(seed)
    specs = [FeatureSpec(f["path"], f["kind"]) for f in FEATURES]  # type: ignore[arg-type]
    size = len(specs) + 1
    models = []
    for label in arms.labels:
        mean = tuple(rng.uniform(-0.05, 0.1) for _ in range(size))
        cov = tuple(
            tuple(rng.uniform(0.001, 0.01) if i == j else 0.0001 for j in range(size))
            for i in range(size)
        )
        models.append(ArmModel(label, mean, cov))
    return Policy(arms.experiment.key, 1, Encoder(specs), models, floor=0.05)


def _fastest(run: Callable[[], object], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def run_contextual_cost(
    slots: Sequence[Slot], visitors: Sequence[Visitor], env: DecisionEnv, now: datetime
) -> ContextualCostResult:
    bandit_slots = [_with_mode(s, "bandit") for s in slots]
    context_slots = [_with_mode(s, "contextual") for s in slots]
    experiment_slot = next(i for i, s in enumerate(slots) if s.arms)
    arms = next(iter(bandit_slots[experiment_slot].arms.values()))
    key = arms.experiment.key
    weights = Allocations({key: _rebucketed(arms)}, 1)
    contextual = Allocations({key: _rebucketed(arms)}, 1, {key: _policy(arms)})
    bandit_env = dataclasses.replace(env, allocations=weights)
    context_env = dataclasses.replace(env, allocations=contextual)
    first = [decide(context_slots[experiment_slot], v, now, None, context_env) for v in visitors]
    reached = [v for v, d in zip(visitors, first, strict=True) if d.source == "experiment"]
    sticky = [_state_after(d) for d in first if d.source == "experiment"]

    def pages(
        decided: Sequence[Slot],
        base: DecisionEnv,
        states: Sequence[DecisionState] | None = None,
        who: Sequence[Visitor] = visitors,
    ) -> Callable[[], Any]:
        def run() -> list[Any]:
            out = []
            for i, visitor in enumerate(who):
                visitor._matches.clear()
                page = base if states is None else dataclasses.replace(base, state=states[i])
                out.append([decide(s, visitor, now, None, page) for s in decided])
            return out

        return run

    one_bandit, one_context = [bandit_slots[experiment_slot]], [context_slots[experiment_slot]]
    runs = {
        "bandit": pages(bandit_slots, bandit_env),
        "contextual": pages(context_slots, context_env),
        "bandit slot": pages(one_bandit, bandit_env, None, reached),
        "contextual slot": pages(one_context, context_env, None, reached),
        "bandit sticky": pages(one_bandit, bandit_env, sticky, reached),
        "contextual sticky": pages(one_context, context_env, sticky, reached),
    }
    timings: dict[str, float] = {}
    for _ in range(ROUNDS):
        for name, run in runs.items():
            timings[name] = min(timings.get(name, float("inf")), _fastest(run))
    page_n, slot_n = len(visitors) * len(slots), len(reached)
    return ContextualCostResult(
        slots=len(slots),
        reached=sum(d.source == "experiment" for d in first) / len(first),
        features=len(FEATURES),
        arms=len(arms.labels),
        bandit_page_per_slot_us=timings["bandit"] / page_n * 1e6,
        contextual_page_per_slot_us=timings["contextual"] / page_n * 1e6,
        bandit_slot_us=timings["bandit slot"] / slot_n * 1e6,
        contextual_slot_us=timings["contextual slot"] / slot_n * 1e6,
        bandit_sticky_slot_us=timings["bandit sticky"] / slot_n * 1e6,
        contextual_sticky_slot_us=timings["contextual sticky"] / slot_n * 1e6,
        page_ratio=timings["contextual"] / timings["bandit"],
        slot_ratio=timings["contextual slot"] / timings["bandit slot"],
        sticky_ratio=timings["contextual sticky"] / timings["bandit sticky"],
    )


def _state_after(decision: Any) -> DecisionState:
    """The decision state the writer would store after this first decision."""
    rows: dict[bytes, bytes] = {}
    for entry in decision.tests:
        rows[f"a:{entry.exposure.test}".encode()] = entry.assignment.encode()
    return DecisionState((rows,), key=Keys("bench").decisions("u:x"))


def report(result: ContextualCostResult) -> str:
    return (
        f"\ncontextual bandit decision cost ({result.features} features, {result.arms} arms; "
        f"{result.reached:.0%} of page views reach the experiment)\n"
        f"  page, per slot (new visitors):  bandit {result.bandit_page_per_slot_us:6.2f} us, "
        f"contextual {result.contextual_page_per_slot_us:6.2f} us ({result.page_ratio:.2f}x)\n"
        f"  experiment slot, new visitor:   bandit {result.bandit_slot_us:6.2f} us, "
        f"contextual {result.contextual_slot_us:6.2f} us ({result.slot_ratio:.2f}x)\n"
        f"  experiment slot, sticky:        bandit {result.bandit_sticky_slot_us:6.2f} us, "
        f"contextual {result.contextual_sticky_slot_us:6.2f} us ({result.sticky_ratio:.2f}x)"
    )
