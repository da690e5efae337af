"""The bandit part of experiment results: allocation over time, chance to be best, regret.

- `weights`: the allocation in force (the editor's weights, or the equal split, before the
  first update); `allocations`: every stored allocation (version, time, weights, visitors then).
- `chanceToBeBest`: P(arm's rate is the highest), Beta posteriors, Monte Carlo with a seed
  fixed by the experiment and its visitor count (the same data reads the same).
- `regret`: conversions expected to be lost against serving the best arm to everyone,
  sum over arms of visitors_i x (max_j m_j - m_i) with m the posterior mean (1 + c) / (2 + n).
- The SRM check's expected visitors per arm follow the weights in force when each visitor came
  (`bandit.expected_visitors`), so a correctly moving allocation is not a mismatch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rich.table import Table

from assembly.decisions.state import TestMeta
from assembly.experiments.allocation import Allocation
from assembly.experiments.bandit import (
    ArmData,
    chance_to_be_best,
    expected_visitors,
    regret,
    run_seed,
)
from assembly.store import TestCounts


@dataclass(frozen=True, slots=True)
class BanditRecord:
    """What Redis holds for a bandit: the allocation in force and its history."""

    allocation: Allocation | None
    history: list[dict[str, Any]] = field(default_factory=list)

    def fits(self, labels: Sequence[str]) -> bool:
        allocation = self.allocation
        return allocation is not None and set(allocation.labels) == set(labels)

    def meta(self, meta: TestMeta) -> TestMeta:
        """The arms' shares as the bandit has them now (the editor's before the first update)."""
        if self.allocation is None or not self.fits(meta.arms):
            return meta
        weights = self.allocation.by_label()
        shares = tuple(weights[label] for label in meta.arms)
        return TestMeta(meta.kind, meta.arms, shares, meta.goal)

    def expected(self, meta: TestMeta, visitors: Sequence[int]) -> list[float]:
        """Expected visitors per current arm under the allocations over time."""
        total = sum(visitors)
        allocation = self.allocation
        if allocation is None or not self.fits(meta.arms):
            share = sum(meta.weights) or 1.0
            return [total * w / share for w in meta.weights]
        return expected_visitors(
            allocation.expected, allocation.counted, allocation.by_label(), total, meta.arms
        )


def bandit_section(
    key: str, record: BanditRecord, meta: TestMeta, counts: TestCounts, floor: float
) -> dict[str, Any]:
    labels = list(meta.arms)
    data = [ArmData(x, counts.visitors.get(x, 0), counts.conversions.get(x, 0)) for x in labels]
    total = sum(a.visitors for a in data)
    chance = chance_to_be_best(data, run_seed(key, total))
    allocation = record.allocation
    return {
        "version": allocation.version if allocation else 0,
        "updatedAt": _iso(allocation.at) if allocation else None,
        "minExploration": floor,
        "weights": dict(zip(labels, meta.weights, strict=True)),
        "chanceToBeBest": dict(zip(labels, chance, strict=True)),
        "regret": regret(data).to_json(),
        "allocations": [{**entry, "at": _iso(entry["at"])} for entry in record.history],
    }


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def allocation_table(document: dict[str, Any], limit: int = 12) -> Table:
    """The last `limit` allocations, one row each (`cli.py results KEY` for a bandit)."""
    bandit = document["bandit"]
    labels = [row["variant"] for row in document["arms"] if row["arm"] is not None]
    lost = bandit["regret"]
    caption = (
        f"regret: {lost['conversions']:.1f} conversions lost against {lost['bestArm'] or '-'}"
        f" · exploration floor {bandit['minExploration']:.0%} per arm"
    )
    table = Table(title="bandit allocation over time", caption=caption)
    for name in ("version", "at", "visitors", *labels):
        table.add_column(name, justify="right")
    for entry in bandit["allocations"][-limit:]:
        weights = entry["weights"]
        shares = [f"{weights[x]:.1%}" if x in weights else "-" for x in labels]
        table.add_row(str(entry["version"]), entry["at"], str(entry["visitors"]), *shares)
    best = bandit["chanceToBeBest"]
    table.add_row("P(best)", "now", "", *(f"{best.get(x, 0.0):.1%}" for x in labels))
    return table
