"""Experiment results: the counters of a test, read as statistics (admin API and CLI)."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from rich.table import Table

from assembly.config import DecisionSettings
from assembly.exceptions import ExperimentNotFound
from assembly.experiments import experiment_meta
from assembly.state import TestMeta
from assembly.stats import chance_to_beat, rate, relative_uplift, srm, two_sided_p
from assembly.store import TestCounts, read_counts
from core.redis import Keys
from integration.library import Library, compile_library
from integration.model import Experiment
from integration.store import ContentStore


def find_experiment(library: Library | None, key: str) -> tuple[Experiment, TestMeta] | None:
    """The experiment and its arms as the live library has them (the first slot using it)."""
    if library is None:
        return None
    for slot in library.slots.values():
        arms = tuple(v for v in slot.variants if v.experiment and v.experiment.key == key)
        if arms:
            experiment = arms[0].experiment
            assert experiment is not None
            return experiment, experiment_meta(experiment, arms)
    return None


async def experiment_results(
    redis: Redis, keys: Keys, key: str, library: Library | None, settings: DecisionSettings
) -> dict[str, Any]:
    counts = await read_counts(redis, keys, key)
    found = find_experiment(library, key)
    if found is None and counts.empty:
        raise ExperimentNotFound(f"no experiment {key!r} in the library and no data recorded")
    meta = counts.meta or (found[1] if found else None)
    if meta is None:  # data without metadata: arms as recorded
        arms = max([*counts.visitors, *counts.conversions, 0]) + 1
        meta = TestMeta("experiment", tuple(f"arm {i}" for i in range(arms)), (1.0,) * arms, None)
    return results_document(key, counts, meta, found[0] if found else None, settings)


def results_document(
    key: str,
    counts: TestCounts,
    meta: TestMeta,
    experiment: Experiment | None,
    settings: DecisionSettings,
) -> dict[str, Any]:
    visitors = [counts.visitors.get(i, 0) for i in range(len(meta.arms))]
    conversions = [counts.conversions.get(i, 0) for i in range(len(meta.arms))]
    arms = []
    for i, name in enumerate(meta.arms):
        n, c = visitors[i], conversions[i]
        row: dict[str, Any] = {
            "arm": i,
            "variant": name,
            "weight": meta.weights[i] if i < len(meta.weights) else None,
            "exposures": n,
            "sessions": counts.sessions.get(i, 0),
            "conversions": c,
            "rate": rate(c, n),
        }
        if i > 0:
            uplift = relative_uplift(conversions[0], visitors[0], c, n)
            row["uplift"] = (
                None
                if uplift is None
                else {"relative": uplift.relative, "ci95": [uplift.low, uplift.high]}
            )
            row["pValue"] = two_sided_p(conversions[0], visitors[0], c, n)
            row["chanceToBeatControl"] = chance_to_beat(conversions[0], visitors[0], c, n)
        arms.append(row)
    ratio = srm(visitors, meta.weights)
    return {
        "experiment": key,
        "status": experiment.status if experiment else None,
        "goalEvent": meta.goal,
        "arms": arms,
        "srm": {
            "chiSquare": ratio.chi_square if ratio else None,
            "pValue": ratio.p_value if ratio else None,
            "threshold": settings.srm_threshold,
            "mismatch": bool(ratio and ratio.p_value < settings.srm_threshold),
            "expected": list(ratio.expected) if ratio else None,
        },
    }


def results_table(document: dict[str, Any]) -> Table:
    """The results as a terminal table (`cli.py results KEY`)."""
    srm_info = document["srm"]
    caption = (
        f"goal: {document['goalEvent'] or '-'} · SRM chi-square p="
        f"{_num(srm_info['pValue'], '.4g')}"
        + (" · SAMPLE RATIO MISMATCH: the split is broken" if srm_info["mismatch"] else "")
    )
    table = Table(title=f"experiment {document['experiment']}", caption=caption)
    for name in (
        "arm",
        "variant",
        "exposures",
        "conversions",
        "rate",
        "uplift (95% CI)",
        "p",
        "P(beat)",
    ):
        table.add_column(name, justify="left" if name == "variant" else "right")
    for row in document["arms"]:
        uplift = row.get("uplift")
        shown = (
            f"{uplift['relative']:+.1%} [{uplift['ci95'][0]:+.1%}, {uplift['ci95'][1]:+.1%}]"
            if uplift
            else "-"
        )
        table.add_row(
            str(row["arm"]),
            row["variant"],
            str(row["exposures"]),
            str(row["conversions"]),
            _num(row["rate"], ".2%"),
            shown if row["arm"] else "(control)",
            _num(row.get("pValue"), ".4f"),
            _num(row.get("chanceToBeatControl"), ".1%"),
        )
    return table


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


async def stored_results(
    redis: Redis,
    keys: Keys,
    content: ContentStore,
    key: str,
    settings: DecisionSettings,
) -> dict[str, Any]:
    """Results from Redis alone (the CLI): the library compiled from the stored content."""
    library = None
    if await content.version() > 0:
        library = await asyncio.to_thread(compile_library, await content.load(), link_depth=0)
    return await experiment_results(redis, keys, key, library, settings)
