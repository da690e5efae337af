"""A logged decision: what the hot path hands over, and the JSON record built from it off-path.

The hot path only collects references (`PendingDecision`: the request, the profile and state
it read, the library, the answers): no copying, no encoding. `to_record` runs in the writer
and keeps what replay needs:

- `content`: version, epoch and generation of the library that decided;
- `request`: the parsed request as sent (template or slots, user ids, session, context);
- `profile`: every field of the profile read (traits, audiences, signals, consent, ...);
- `state`: the decision-state fields this page's decisions could read, with the values they
  had (sticky arms, cap counts, session marks; unflushed writes of this replica included);
- `switches`: admin kill switches in force; `at`: the decision clock;
- `learning`: the ranking model's version in force (`model`), and for each bandit experiment
  on the page's slots the weights in force (`bandits`: version, arms, weights, and a
  contextual policy's parameter version), so that replay decides with them, not with today's;
- `slots`: the outcome per slot (variant, source, reason, experiment), in the order shown.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from assembly.decisions.state import DecisionState, Periods, count_field
from assembly.experiments.allocation import Allocations
from assembly.experiments.assignment import rollout_test
from assembly.killswitch import SwitchBoard
from assembly.ports import Profile
from assembly.schemas import AssembleRequest
from integration.library import Library
from integration.model import CapPeriod, Slot


@dataclass(slots=True)
class PendingDecision:
    """References to what decided one page view; turned into a record off the hot path."""

    id: str
    now: datetime
    request: AssembleRequest
    answers: Sequence[Mapping[str, Any]]
    library: Library | None = None
    locale: str | None = None
    profile: Profile | None = None
    store_ok: bool = True
    state: DecisionState | None = None
    slots: Sequence[Slot] = ()
    board: SwitchBoard | None = None
    fallback: str | None = None  # the cause, when the fallback library answered
    bandits: Allocations | None = None  # the bandit weights in force
    model: int | None = None  # the ranking model's version in force


@dataclass(frozen=True, slots=True)
class LibraryTag:
    """Which library decided: versions are ordered within one epoch (one store's life)."""

    version: int
    epoch: str | None
    generation: str | None

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "epoch": self.epoch, "generation": self.generation}


def encode_record(
    pending: PendingDecision, tag: LibraryTag | None, cache: RecordCache | None = None
) -> bytes:
    """The record as JSON. orjson encodes the profile dataclass and the clock itself (in C),
    pydantic the request (embedded as a fragment); `_json_default` turns the profile's sets
    and read-only mappings into JSON."""
    record = to_record(pending, tag, cache or RecordCache())
    return orjson.dumps(record, default=_json_default, option=_OPTIONS)


_OPTIONS = orjson.OPT_NON_STR_KEYS


def _json_default(value: object) -> object:
    if isinstance(value, Set):
        return sorted(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def to_record(
    pending: PendingDecision, tag: LibraryTag | None, cache: RecordCache
) -> dict[str, Any]:
    """The record, ready for `orjson.dumps(..., default=_json_default)` (`encode_record`)."""
    state = pending.state
    slots = [cache.of(slot) for slot in pending.slots]
    return {
        "id": pending.id,
        "at": pending.now,
        "content": tag.to_json() if tag else None,
        "fallback": pending.fallback,
        "request": orjson.Fragment(pending.request.model_dump_json()),
        "locale": pending.locale,
        "store": {
            "answered": pending.store_ok,
            "counted": state is not None and state.key is not None,
            "session": state.session if state is not None else None,
        },
        "profile": pending.profile,
        "state": state_facts(state, slots, pending.now) if state is not None else {},
        "switches": cache.switches(pending.board) if pending.board else [],
        "learning": {"model": pending.model, "bandits": _bandits(pending.bandits, slots)},
        "slots": [_outcome(answer) for answer in pending.answers],
    }


def _bandits(allocations: Allocations | None, slots: Sequence[SlotRead]) -> dict[str, Any]:
    """The weights in force for the bandit experiments these slots run (A/B tests have none)."""
    found: dict[str, Any] = {}
    if allocations is None or not allocations.by_key:
        return found
    for read in slots:
        for key in read.slot.arms:
            allocation = allocations.by_key.get(key)
            if allocation is None or key in found:
                continue
            policy = allocations.policies.get(key)
            found[key] = {
                "version": allocation.version,
                "arms": allocation.labels,
                "weights": allocation.weights,
                "policy": policy.version if policy is not None else None,
            }
    return found


def _outcome(answer: Mapping[str, Any]) -> dict[str, Any]:
    """The slot's outcome in an answer, without its content (a literal: the cheapest copy)."""
    return {
        "slot": answer["slot"],
        "variant": answer["variant"],
        "source": answer["source"],
        "reason": answer["reason"],
        "experiment": answer["experiment"],
    }


def profile_of(doc: Mapping[str, Any] | None) -> Profile | None:
    if doc is None:
        return None
    known = {f.name for f in dataclasses.fields(Profile)}
    values: dict[str, Any] = {}
    for name, value in doc.items():
        if name in known:
            default = getattr(_EMPTY, name)
            values[name] = frozenset(value) if isinstance(default, frozenset) else value
    return Profile(**values)


_EMPTY = Profile()


@dataclass(frozen=True, slots=True)
class SlotRead:
    """What one compiled slot's decision can read from the state: its tests (experiments and
    rollouts) and its capped variants."""

    slot: Slot
    tests: tuple[str, ...]
    capped: tuple[tuple[str, CapPeriod], ...]


class RecordCache:
    """What records read of long-lived objects, built once: a `SlotRead` per compiled slot (a
    library's slots live as long as it does), so a record does not walk every variant of every
    slot again (bounded: cleared when full), and the switch board's JSON (a board is replaced,
    never changed, when an operator flips a switch)."""

    def __init__(self, limit: int = 4096) -> None:
        self._by_id: dict[int, SlotRead] = {}
        self._limit = limit
        self._board: SwitchBoard | None = None
        self._switches = orjson.Fragment(b"[]")

    def switches(self, board: SwitchBoard) -> orjson.Fragment:
        """The admin switches in force, as the record's JSON list."""
        if board is not self._board:
            self._switches = orjson.Fragment(orjson.dumps([s.to_json() for s in board.all()]))
            self._board = board
        return self._switches

    def of(self, slot: Slot) -> SlotRead:
        found = self._by_id.get(id(slot))
        if found is None or found.slot is not slot:
            if len(self._by_id) >= self._limit:
                self._by_id.clear()
            found = _slot_read(slot)
            self._by_id[id(slot)] = found
        return found


def _slot_read(slot: Slot) -> SlotRead:
    tests = [*slot.arms, *(rollout_test(v) for v in slot.variants if v.rollout is not None)]
    capped = tuple(
        (v.key, v.frequency_cap.per) for v in slot.variants if v.frequency_cap is not None
    )
    return SlotRead(slot, tuple(tests), capped)


def state_facts(state: DecisionState, slots: Sequence[SlotRead], now: datetime) -> dict[str, str]:
    """The state fields the page's decisions could read, with their values (absent: unset)."""
    facts: dict[str, str] = {}
    periods = Periods.at(now)
    for read in slots:
        key = read.slot.key
        marker = state.session_marker(key)
        if marker is not None:
            facts[f"s:{state.session}:slot:{key}"] = marker
        for test in read.tests:
            assignment = state.assignment(test)
            if assignment is not None:
                facts[f"a:{test}"] = assignment.encode().decode()
        for variant, per in read.capped:
            name = count_field(variant, per, periods, state.session)
            if name is not None and (count := state.count(name)):
                facts[name] = str(count)
    return facts


def state_of(record: Mapping[str, Any]) -> DecisionState:
    """The decision state a replay reads: the recorded fields as one row."""
    store = record["store"]
    row = {name.encode(): value.encode() for name, value in record["state"].items()}
    key = "replay" if store["counted"] else None  # a key marks a visitor that can be counted
    return DecisionState(rows=(row,), session=store["session"], key=key)
