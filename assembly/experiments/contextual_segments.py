"""A contextual bandit's allocation per segment, and the conversions it lost, for results.

A segment is the set of yes/no features a visitor has (the `bool`, `audience` and `category`
features of the fit: `signals.cartAbandoned`, `audiences:vip`, `traits.plan=pro`), named by
them joined with `+`, `(none)` when they have none; the `limit` largest are listed and the rest
pooled as `(other)`. Per segment: visitors, each arm's share of them and their conversions, the
arm the fitted model expects to convert best there, and the estimated regret,

    sum over the segment's visitors of (max over arms of x'mean_a - x'mean_shown),

the conversions lost against serving each visitor the arm that is best for them under the model
(a model estimate, like the plain bandit's regret on posterior means).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rich.table import Table

from assembly.experiments.contextual import ArmModel
from assembly.learning.data import Exposure
from assembly.learning.features import FeatureSpec

NONE, OTHER = "(none)", "(other)"


def _dot(mean: tuple[float, ...], row: Sequence[float]) -> float:
    return sum(m * v for m, v in zip(mean, row, strict=True))


def segment_name(specs: Sequence[FeatureSpec], row: Sequence[float]) -> str:
    """`row` is a design row: the intercept, then one value per spec."""
    on = [s.name for s, v in zip(specs, row[1:], strict=True) if s.kind != "number" and v]
    return "+".join(on) if on else NONE


def segment_summary(
    specs: Sequence[FeatureSpec],
    models: Sequence[ArmModel],
    rows: Sequence[tuple[Exposure, Sequence[float]]],
    limit: int = 12,
) -> list[dict[str, Any]]:
    groups: dict[str, list[tuple[Exposure, Sequence[float]]]] = {}
    for exposure, row in rows:
        groups.setdefault(segment_name(specs, row), []).append((exposure, row))
    ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    kept = ordered[:limit]
    rest = [pair for _, group in ordered[limit:] for pair in group]
    if rest:
        kept.append((OTHER, rest))
    return [_segment(name, group, models) for name, group in kept]


def _segment(
    name: str, group: list[tuple[Exposure, Sequence[float]]], models: Sequence[ArmModel]
) -> dict[str, Any]:
    labels = [m.label for m in models]
    shown = dict.fromkeys(labels, 0)
    converted = dict.fromkeys(labels, 0)
    totals = dict.fromkeys(labels, 0.0)
    lost = 0.0
    for exposure, row in group:
        means = {m.label: _dot(m.mean, row) for m in models}
        for arm, value in means.items():
            totals[arm] += value
        shown[exposure.variant] += 1
        converted[exposure.variant] += int(exposure.converted)
        lost += max(means.values()) - means[exposure.variant]
    visitors = len(group)
    return {
        "segment": name,
        "visitors": visitors,
        "arms": {
            arm: {
                "shown": shown[arm],
                "share": shown[arm] / visitors,
                "conversions": converted[arm],
                "expectedRate": totals[arm] / visitors,
            }
            for arm in labels
        },
        "bestArm": max(labels, key=lambda arm: totals[arm]),
        "regret": {"conversions": lost, "perVisitor": lost / visitors},
    }


def contextual_section(doc: dict[str, Any] | None) -> dict[str, Any]:
    """The `contextual` part of an experiment's results, from its stored parameters."""
    if doc is None:
        return {"version": 0, "updatedAt": None, "segments": [], "regret": None}
    segments = doc.get("segments") or []
    lost = sum(s["regret"]["conversions"] for s in segments)
    visitors = sum(s["visitors"] for s in segments)
    at = doc.get("at")
    return {
        "version": doc.get("version"),
        "updatedAt": _iso(at) if isinstance(at, int | float) else None,
        "exposures": doc.get("exposures"),
        "conversions": doc.get("conversions"),
        "features": [
            f.get("path") + (f"={f['value']}" if "value" in f else "")
            for f in doc.get("features") or []
        ],
        "minExploration": doc.get("floor"),
        "read": doc.get("read"),
        "fitSeconds": doc.get("fitSeconds"),
        "segments": segments,
        "regret": {"conversions": lost, "perVisitor": lost / visitors if visitors else None},
    }


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def segment_table(document: dict[str, Any]) -> Table:
    """Each segment's allocation and regret (`cli.py results KEY` for a contextual bandit)."""
    section = document["contextual"]
    labels = [row["variant"] for row in document["arms"] if row["arm"] is not None]
    lost = section["regret"]
    caption = (
        f"parameters v{section['version']} · regret: "
        + (f"{lost['conversions']:.1f} conversions lost" if lost else "-")
        + " against the best arm per segment (model estimate)"
    )
    table = Table(title="contextual allocation per segment", caption=caption)
    for name in ("segment", "visitors", *labels, "best", "regret"):
        table.add_column(name, justify="left" if name == "segment" else "right")
    for seg in section["segments"]:
        arms = seg["arms"]
        shares = [f"{arms[x]['share']:.1%}" if x in arms else "-" for x in labels]
        table.add_row(
            seg["segment"],
            str(seg["visitors"]),
            *shares,
            seg["bestArm"],
            f"{seg['regret']['conversions']:.1f}",
        )
    return table
