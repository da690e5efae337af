"""The per-visitor table: features as the engine would have seen them, and the label.

A visitor converted when a `track` of the goal event is in the window. Signals are rebuilt by
replaying the visitor's events *before* the first goal event through the consumer's own
derivation (signals.apply_event), read at that moment: the profile as stored afterwards would
leak the outcome (an order clears `cartAbandoned`). Visitors who did not convert are read at
the end of the window. Traits and audiences come from the profile store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from assembly.insights.reader import Recorded, Visitor
from segment_sync.config import SignalRules
from segment_sync.profiles.signals import apply_event, current_signals
from segment_sync.profiles.state import ProfileState
from segment_sync.stream.apply import Entry

_SKIPPED_SIGNALS = frozenset({"lastSeen", "cart", "recentEvents"})
_MAX_CATEGORIES = 12


@dataclass(slots=True)
class Row:
    vid: str
    converted: bool
    context: dict[str, Any]  # {signals, traits, audiences}: what conditions are evaluated on
    names: list[str]  # event names before the goal, in time order


@dataclass(slots=True)
class Table:
    rows: list[Row]
    goal: str


def build_table(recorded: Recorded, goal: str, rules: SignalRules | None = None) -> Table:
    rules = rules or SignalRules()
    rows = [_row(v, goal, recorded.window_end, rules) for v in recorded.visitors.values()]
    return Table([r for r in rows if r.names or r.converted], goal)


def _is_goal(e: Entry, goal: str) -> bool:
    return e.message.get("type") == "track" and e.message.get("event") == goal


def _name(e: Entry) -> str:
    kind = e.message.get("type")
    if kind == "track":
        return str(e.message.get("event"))
    return str(kind)


def _row(visitor: Visitor, goal: str, end: float, rules: SignalRules) -> Row:
    state = ProfileState()
    names: list[str] = []
    cutoff, converted = end, False
    for e in visitor.events:
        if _is_goal(e, goal):
            cutoff, converted = e.at, True
            break
        apply_event(state, e.message, e.at, rules, trusted=e.trusted)
        if e.message.get("type") in ("track", "page", "screen"):
            names.append(_name(e))
    context = {
        "signals": current_signals(state, cutoff),
        "traits": dict(visitor.traits),
        "audiences": sorted(visitor.audiences),
    }
    return Row(visitor.vid, converted, context, names)


# ---------------------------------------------------------------- features


@dataclass(frozen=True, slots=True)
class Feature:
    path: str  # a condition path: signals.visits, traits.plan, audiences:vip
    kind: str  # bool | number | category | audience


def features_of(rows: list[Row]) -> list[Feature]:
    """Every signal, trait and audience some visitor has, typed by the values seen."""
    seen: dict[str, set[str]] = {}
    for row in rows:
        for path, value in flat(row.context).items():
            seen.setdefault(path, set()).add(_kind(value))
        for key in row.context["audiences"]:
            seen.setdefault(f"audiences:{key}", set()).add("audience")
    out = []
    for path, kinds in sorted(seen.items()):
        if len(kinds) == 1:
            out.append(Feature(path, next(iter(kinds))))
        elif kinds <= {"number", "bool"}:
            out.append(Feature(path, "number"))
    return [f for f in out if f.kind != "other"]


def flat(context: Mapping[str, Any]) -> dict[str, Any]:
    """`signals.*` and `traits.*` leaves (one level of nesting under signals: dwell, engagement)."""
    out: dict[str, Any] = {}
    for name, value in context["signals"].items():
        if name in _SKIPPED_SIGNALS:
            continue
        if isinstance(value, Mapping):
            for sub, leaf in value.items():
                out[f"signals.{name}.{sub}"] = leaf
        else:
            out[f"signals.{name}"] = value
    for name, value in context["traits"].items():
        out[f"traits.{name}"] = value
    return out


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str) and len(value) <= 64:
        return "category"
    return "other"


def categories(rows: list[Row], path: str) -> list[str]:
    counts: dict[str, int] = {}
    for row in rows:
        value = flat(row.context).get(path)
        if isinstance(value, str):
            counts[value] = counts.get(value, 0) + 1
    ranked = sorted(counts, key=lambda v: -counts[v])
    return ranked[:_MAX_CATEGORIES]
