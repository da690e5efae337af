"""Replay: decide a logged page view again, from its recorded inputs, on a given library.

Nothing is written (the engine has no writer). The admin switches, the clock, the profile,
the decision-state fields, the ranking model's version and the bandit weights are the recorded
ones (`learned.py`); the settings are this replica's.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from assembly.config import DecisionSettings
from assembly.decision_log.learned import Learned
from assembly.decision_log.record import LibraryTag, profile_of, state_of
from assembly.decisions.engine import DecisionEngine
from assembly.decisions.outcome import Decision
from assembly.decisions.visitor import build_visitor
from assembly.killswitch import FixedBoard, KillSwitch, SwitchBoard
from assembly.schemas import AssembleRequest
from integration.library import Library
from integration.model import Slot, Template

CHOICE = ("variant", "source", "experiment")


def replay_on(
    record: Mapping[str, Any],
    library: Library,
    tag: LibraryTag,
    kept: bool,
    settings: DecisionSettings,
    learned: Learned,
) -> dict[str, Any]:
    request = AssembleRequest.model_validate(record["request"])
    template, slots, gone = _select(library, request)
    now = datetime.fromisoformat(record["at"])
    visitor = build_visitor(request, profile_of(record["profile"]), now.timestamp())
    board = FixedBoard(_board(record["switches"]))
    engine = DecisionEngine(settings, switches=board, models=learned, allocations=learned)
    placed = engine.decide_page(library, template, slots, visitor, state_of(record), now).placed
    replayed = {slot.key: _outcome(slot, d) for slot, d in placed}
    rows = [_compare(r, replayed.get(r["slot"])) for r in record["slots"]]
    recorded_order = [r["slot"] for r in record["slots"]]
    return {
        "decisionId": record["id"],
        "same": all(r["same"] for r in rows) and recorded_order == list(replayed),
        "content": _content(record["content"], tag, kept),
        "learning": learned.to_json(record.get("learning")),
        "gone": gone,
        "order": {"recorded": recorded_order, "replayed": list(replayed)},
        "slots": rows,
    }


def _select(
    library: Library, request: AssembleRequest
) -> tuple[Template | None, tuple[Slot, ...], list[str]]:
    """The page's slots in this library, and what it no longer has."""
    if request.template is not None:
        template = library.templates.get(request.template)
        if template is None:
            return None, (), [f"template {request.template}"]
        return template, template.slots, []
    slots = [library.slots.get(key) for key in request.slots or ()]
    gone = [f"slot {key}" for key, slot in zip(request.slots or (), slots, strict=True) if not slot]
    return None, tuple(s for s in slots if s is not None), gone


def _board(switches: list[Mapping[str, Any]]) -> SwitchBoard:
    return SwitchBoard.of(
        KillSwitch(s["scope"], s.get("key") or "", s["by"], s["reason"], s["at"]) for s in switches
    )


def _outcome(slot: Slot, decision: Decision) -> dict[str, Any]:
    return {
        "slot": slot.key,
        "variant": decision.variant.key if decision.variant else None,
        "source": decision.source,
        "reason": decision.reason,
        "experiment": decision.experiment,
    }


def _compare(recorded: Mapping[str, Any], replayed: Mapping[str, Any] | None) -> dict[str, Any]:
    same = replayed is not None and all(recorded[k] == replayed[k] for k in CHOICE)
    return {"slot": recorded["slot"], "same": same, "recorded": recorded, "replayed": replayed}


def _content(recorded: Mapping[str, Any] | None, tag: LibraryTag, kept: bool) -> dict[str, Any]:
    version = recorded["version"] if recorded else None
    same = version == tag.version and (not recorded or recorded["epoch"] in (None, tag.epoch))
    if kept:
        note = None
    else:
        note = (
            f"content version {version} is no longer kept on this replica: replayed on the "
            f"live version {tag.version}, so differences may come from content changes"
        )
    return {
        "recorded": recorded,
        "replayedOn": tag.to_json(),
        "sameVersion": same,
        "keptVersion": kept,
        "note": note,
    }
