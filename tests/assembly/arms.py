"""Builders for experiment-arm tests: the demo experiment on `home.cta` with arms of our choosing,
and growthbook-python's assignment for the same experiment."""

from __future__ import annotations

import copy
from typing import Any

from growthbook import Experiment as GrowthBookExperiment
from growthbook import GrowthBook

from tests.support.demo import demo_items, with_fields

EXPERIMENT = "hero-headline-test"
SLOT = "home.cta"
WEIGHTS = {"control": 0.1, "cta-b": 0.2, "cta-c": 0.3, "cta-d": 0.4}


def arm_item(key: str, weight: float | None, *, revision: int = 1) -> dict[str, Any]:
    """An arm of the demo experiment: a copy of `var-cta-headline-b` under another key."""
    item = copy.deepcopy(demo_items()["var-cta-headline-b"])
    item["sys"]["id"] = f"var-{key}"
    item["sys"]["revision"] = revision
    item["sys"]["updatedAt"] = f"2026-11-{10 + revision:02d}T10:00:00.000Z"
    item["fields"]["key"] = {"en-US": key}
    item["fields"].pop("weight", None)
    if weight is not None:
        item["fields"]["weight"] = {"en-US": weight}
    return item


def slot_item(*arms: str, revision: int = 3) -> dict[str, Any]:
    """`home.cta` with its two targeted variants, then the arms in this order."""
    item = with_fields(
        "slot-home-cta",
        variants=[
            {"sys": {"type": "Link", "linkType": "Entry", "id": i}}
            for i in ("var-cta-cart", "var-cta-summer", *(f"var-{a}" for a in arms))
        ],
    )
    item["sys"]["revision"] = revision
    return item


def experiment_item(*, coverage: float = 0.8, revision: int = 3, **fields: Any) -> dict[str, Any]:
    item = with_fields("exp-hero-headline-test", coverage=coverage, **fields)
    item["sys"]["revision"] = revision
    return item


def growthbook(
    labels: list[str], weights: list[float], user: str, coverage: float = 0.8
) -> str | None:
    """The variation growthbook-python's `run` gives `user` (None: not in the experiment)."""
    experiment = GrowthBookExperiment(
        key=EXPERIMENT,
        variations=labels,
        weights=weights,
        coverage=coverage,
        seed=EXPERIMENT,
        hashAttribute="id",
        hashVersion=2,
        namespace=("home-page", 0, 1),
    )
    result = GrowthBook(attributes={"id": user}).run(experiment)
    return result.value if result.inExperiment else None
