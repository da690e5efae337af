"""Experiment results: the counters of a test, read as statistics (admin API and CLI).

Rows are per arm label (the variant key, `control` for the baseline): they stay exact when arms
are republished, reordered or reweighted, because the counters are kept by label too.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from rich.console import Group, RenderableType
from rich.table import Table

from assembly.config import DecisionSettings
from assembly.decisions.state import TestMeta
from assembly.exceptions import ExperimentNotFound
from assembly.experiments.allocation import AllocationStore
from assembly.experiments.assignment import experiment_meta
from assembly.experiments.bandit_results import BanditRecord, allocation_table, bandit_section
from assembly.experiments.contextual_params import decode_params
from assembly.experiments.contextual_segments import contextual_section, segment_table
from assembly.experiments.stats import chance_to_beat, rate, relative_uplift, srm, two_sided_p
from assembly.store import TestCounts, read_counts
from core.redis import Keys
from integration.library import Library, compile_library
from integration.model import CONTROL, Experiment
from integration.store import ContentStore


def find_experiment(library: Library | None, key: str) -> tuple[Experiment, TestMeta] | None:
    """The experiment and its arms as the live library has them (the first slot using it)."""
    if library is None:
        return None
    for slot in library.slots.values():
        arms = slot.arms.get(key)
        if arms is not None:
            return arms.experiment, experiment_meta(arms)
    return None


async def experiment_results(
    redis: Redis, keys: Keys, key: str, library: Library | None, settings: DecisionSettings
) -> dict[str, Any]:
    counts = await read_counts(redis, keys, key)
    found = find_experiment(library, key)
    if found is None and counts.empty:
        raise ExperimentNotFound(f"no experiment {key!r} in the library and no data recorded")
    meta = found[1] if found else counts.meta
    if meta is None:  # data without metadata: the arms as recorded, equal shares
        labels = tuple(counts.labels)
        meta = TestMeta("experiment", labels, (1 / max(len(labels), 1),) * len(labels), None)
    experiment = found[0] if found else None
    bandit = None
    if experiment is not None and experiment.mode != "ab":
        store = AllocationStore(redis, keys)
        bandit = BanditRecord(await store.get(key), await store.history(key))
    document = results_document(key, counts, meta, experiment, settings, bandit)
    if experiment is not None and experiment.mode == "contextual":
        # The split follows who came, not the weights: a ratio check has nothing to compare.
        document["srm"].update(applicable=False, mismatch=False)
        params = decode_params(await AllocationStore(redis, keys).parameters(key))
        document["contextual"] = contextual_section(params)
    return document


def results_document(
    key: str,
    counts: TestCounts,
    meta: TestMeta,
    experiment: Experiment | None,
    settings: DecisionSettings,
    bandit: BanditRecord | None = None,
) -> dict[str, Any]:
    """One row per arm by variant key: the current arms in list order (`arm` is the position),
    then arms no longer in the split that still have data (`arm: null`, no weight).

    A bandit's rows carry the weights in force, and its SRM check expects the visitors its
    allocations over time should have sent each arm (`bandit_results`)."""
    if bandit is not None:
        meta = bandit.meta(meta)
    current = list(meta.arms)
    retired = [label for label in counts.labels if label not in current]
    control = current[0] if current else CONTROL
    c_0, n_0 = counts.conversions.get(control, 0), counts.visitors.get(control, 0)
    arms = []
    for label in (*current, *retired):
        position = current.index(label) if label in current else None
        weight = meta.weights[position] if position is not None else None
        arms.append(_row(label, position, weight, counts, (c_0, n_0)))
    visitors = [counts.visitors.get(label, 0) for label in current]
    intended = bandit.expected(meta, visitors) if bandit else meta.weights[: len(current)]
    ratio = srm(visitors, intended)
    document: dict[str, Any] = {
        "experiment": key,
        "status": experiment.status if experiment else None,
        "mode": experiment.mode if experiment else None,
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
    if bandit is not None:
        document["bandit"] = bandit_section(
            key, bandit, meta, counts, settings.bandit_min_exploration
        )
    return document


def _row(
    label: str,
    position: int | None,
    weight: float | None,
    counts: TestCounts,
    control: tuple[int, int],
) -> dict[str, Any]:
    n, c = counts.visitors.get(label, 0), counts.conversions.get(label, 0)
    row: dict[str, Any] = {
        "arm": position,
        "variant": label,
        "weight": weight,
        "exposures": n,
        "sessions": counts.sessions.get(label, 0),
        "conversions": c,
        "rate": rate(c, n),
    }
    if position == 0:
        return row
    c_0, n_0 = control
    uplift = relative_uplift(c_0, n_0, c, n)
    row["uplift"] = (
        None if uplift is None else {"relative": uplift.relative, "ci95": [uplift.low, uplift.high]}
    )
    row["pValue"] = two_sided_p(c_0, n_0, c, n)
    row["chanceToBeatControl"] = chance_to_beat(c_0, n_0, c, n)
    return row


def results_table(document: dict[str, Any]) -> RenderableType:
    """The results as a terminal table (`cli.py results KEY`); a bandit's allocation over
    time, chance to be best and regret below it."""
    table = _arms_table(document)
    if "bandit" not in document:
        return table
    if "contextual" in document:
        return Group(table, allocation_table(document), segment_table(document))
    return Group(table, allocation_table(document))


def _arms_table(document: dict[str, Any]) -> Table:
    srm_info = document["srm"]
    if srm_info.get("applicable") is False:
        srm_info = {**srm_info, "pValue": None}
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
            "-" if row["arm"] is None else str(row["arm"]),
            row["variant"],
            str(row["exposures"]),
            str(row["conversions"]),
            _num(row["rate"], ".2%"),
            "(control)" if row["arm"] == 0 else shown,
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
