"""What a page view must write: the `VisitorWrite` handed to the off-path writer.

From the final decisions of a page (after sequencing and `maxPersonalized`):
- session coherence: the slot's new mark (a variant key, `exp:<key>`), or its removal;
- frequency counts: one view of each capped variant served, in its cap's period;
- tests: an exposure for each test served that the session has not seen yet, and the sticky
  assignment when it is new (a rollout's when the visitor moved between in and out).
Nothing is written without consent, or for a visitor without an id. Most page views of a
visitor change nothing: then no write is made at all. How long the hash then lives follows
from what it holds (`assembly.writer.lifetime`): a page view that only marks its session keeps
it a day, not the months a sticky assignment needs.
"""

from __future__ import annotations

from collections.abc import Sequence

from assembly.decisions.outcome import Decision, TestEntry
from assembly.decisions.state import DecisionState, Periods, VisitorWrite, count_field
from assembly.decisions.visitor import Visitor
from integration.model import Slot


def build_write(
    placed: Sequence[tuple[Slot, Decision]],
    visitor: Visitor,
    state: DecisionState,
    *,
    coherence: bool,
    periods: Periods,
    now: float,
    session_ttl: float,
) -> VisitorWrite | None:
    if state.key is None or not visitor.consent:
        return None
    session = state.session
    marks = coherence and session is not None
    write: VisitorWrite | None = None
    for slot, decision in placed:
        if marks and state.session_marker(slot.key) != decision.marker:
            write = write or _new(state.key, visitor, now)
            _mark(write, f"s:{session}:slot:{slot.key}", decision.marker)
        variant = decision.variant
        if variant is not None and variant.frequency_cap is not None:
            name = count_field(variant.key, variant.frequency_cap.per, periods, session)
            if name is not None:
                write = write or _new(state.key, visitor, now)
                write.incr[name] = write.incr.get(name, 0) + 1
                write.touched |= name.startswith("s:")
        for entry in decision.tests:
            write = _test(write, state, entry, visitor, now)
    stale = state.stale_fields(periods, now, session_ttl)
    if stale:
        write = write or _new(state.key, visitor, now)
        write.deletes.extend(stale)
    if write is not None and write.touched and session is not None:
        write.sets[f"s:{session}"] = str(int(now)).encode()
    if write is not None:
        write.durable = state.durable()
    return write


def _new(key: str, visitor: Visitor, now: float) -> VisitorWrite:
    return VisitorWrite(key, visitor.user_id, visitor.anonymous_id, visitor.session_id, now)


def _mark(write: VisitorWrite, name: str, marker: str | None) -> None:
    """Remember what the slot showed (or forget it when it showed the baseline)."""
    if marker is None:
        write.deletes.append(name)
    else:
        write.sets[name] = marker.encode()
    write.touched = True


def _test(
    write: VisitorWrite | None,
    state: DecisionState,
    entry: TestEntry,
    visitor: Visitor,
    now: float,
) -> VisitorWrite | None:
    test = entry.exposure.test
    if entry.new:
        write = write or _new(state.key or "", visitor, now)
        write.assignments.append((test, entry.assignment, entry.overwrite))
    session = state.session
    if session is None or state.exposed(test):
        return write
    marker = f"s:{session}:x:{test}"
    if write is not None and any(m == marker for m, _ in write.exposures):
        return write
    write = write or _new(state.key or "", visitor, now)
    write.exposures.append((marker, entry.exposure))
    write.touched = True
    return write
