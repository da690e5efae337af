"""`assemble`: from a request to the encoded answer, reading only the snapshot and one round trip.

The only outside call is one pipelined Redis read of the visitor's profile and decision state
(sticky assignments, frequency counts, session marks). When it fails the answer is still
complete (request context only) and marked `degraded`. The read has a time budget
(`DECISIONS_READ_BUDGET_SECONDS`): a hung store costs a page view at most that, and while the
store keeps failing a circuit breaker skips it (one probe at a time) so page views don't wait.
The writes a page view causes (the engine returns them with its decisions) go to the off-path
writer. When no library is live, the bundled
fallback library answers, also `degraded`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from redis.exceptions import RedisError

from assembly import metrics
from assembly.breaker import Breaker
from assembly.config import DecisionSettings
from assembly.decision_log.ids import new_decision_id
from assembly.decision_log.record import PendingDecision
from assembly.decision_log.service import DecisionLog
from assembly.decisions.engine import DecisionEngine
from assembly.decisions.outcome import Decision
from assembly.decisions.selection import locale_of, select_slots
from assembly.decisions.state import EMPTY_STATE, DecisionState
from assembly.decisions.visitor import build_visitor
from assembly.exceptions import ContentUnavailable, PreviewUnavailable
from assembly.fallback import FallbackLibrary, FallbackState
from assembly.ports import LibrarySource, Profile, VisitorReader
from assembly.schemas import AssembleRequest
from assembly.writer import DecisionWriter
from integration.library import Library
from integration.model import Slot

log = structlog.get_logger()


class ProfileBreaker:
    """Reads profile and decision state within a time budget, behind a circuit breaker.

    The read gets `budget_seconds`; when it runs out (a hung store) or fails, the page view
    answers without the store, at once. No retry here: the breaker (`assembly.breaker`) opens
    after a few consecutive failures and then lets one probe through at a time.
    """

    def __init__(
        self,
        reader: VisitorReader,
        *,
        budget_seconds: float = 0.04,
        breaker: Breaker | None = None,
        on_miss: Callable[[str], None] | None = None,
    ) -> None:
        self._reader = reader
        self.budget_seconds = budget_seconds
        self.breaker = breaker or Breaker()
        self.on_miss = on_miss

    async def read(self, request: AssembleRequest) -> tuple[Profile | None, DecisionState, bool]:
        """The profile, the decision state, and whether the store answered."""
        user = request.user
        if user.id is None and user.anonymousId is None:
            return None, EMPTY_STATE, True
        if not self.breaker.acquire():
            return None, EMPTY_STATE, False
        budget = _Budget(self.budget_seconds)
        try:
            profile, state = await self._reader.read(user.id, user.anonymousId, request.sessionId)
        except (RedisError, OSError) as exc:
            self.breaker.failure(type(exc).__name__)
            return None, EMPTY_STATE, False
        except asyncio.CancelledError:
            if not budget.expired():
                self.breaker.release()
                raise
            self.breaker.failure("budget")
            return None, EMPTY_STATE, False
        except BaseException:
            self.breaker.release()
            raise
        finally:
            budget.stop()
        self.breaker.success()
        if profile is None and user.id is not None and self.on_miss is not None:
            self.on_miss(user.id)  # must not block: schedules a background pull
        return profile, state, True


class _Budget:
    """Cancels the running task at a deadline: `asyncio.timeout` without its bookkeeping
    (half the cost per page view, measured). `expired()` tells a budget cancel from any other;
    a budget cancel is swallowed here, never seen by the caller of `read`."""

    __slots__ = ("_fired", "_handle", "_task")

    def __init__(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._fired = False
        self._handle = loop.call_at(loop.time() + seconds, self._fire)

    def _fire(self) -> None:
        self._fired = True
        self._task.cancel()

    def stop(self) -> None:
        self._handle.cancel()

    def expired(self) -> bool:
        """True when the deadline cancelled the task (the cancel is then withdrawn)."""
        return self._fired and self._task.uncancel() == 0


class AssemblyService:
    def __init__(
        self,
        libraries: LibrarySource,
        reader: VisitorReader,
        fallback: FallbackLibrary,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        engine: DecisionEngine | None = None,
        decision_log: DecisionLog | None = None,
        writer: DecisionWriter | None = None,
    ) -> None:
        self._libraries = libraries
        self.writer = writer
        self.decision_log = decision_log
        self._fallback = fallback
        self.fallback_state = FallbackState()
        self.clock = clock
        self.engine = engine or DecisionEngine(DecisionSettings())
        settings = self.engine.settings
        self.profiles = ProfileBreaker(
            reader,
            budget_seconds=settings.read_budget_seconds,
            breaker=Breaker(
                threshold=settings.breaker_failures, open_seconds=settings.breaker_open_seconds
            ),
        )

    async def assemble(self, request: AssembleRequest) -> bytes:
        if request.preview:
            raise PreviewUnavailable("preview is not available: CONTENTFUL_PREVIEW_TOKEN is unset")
        library = self._libraries.library
        if library is None:
            return self._from_fallback(request, "library not loaded")
        self.fallback_state.recovered()
        template, slots = select_slots(library, request)
        locale = locale_of(library, request.locale)
        profile, state, store_ok = await self.profiles.read(request)
        now = self.clock()
        visitor = build_visitor(request, profile, now.timestamp())
        page = self.engine.decide_page(library, template, slots, visitor, state, now)
        if page.write is not None and self.writer is not None:
            self.writer.submit(page.write)
        if not store_ok:
            metrics.ASSEMBLE_DEGRADED.labels(cause="store").inc()
        answers = [_answer(library, s, d, locale) for s, d in page.placed]
        _count_sources(answers)
        decision_id = new_decision_id(now)
        log = self.decision_log
        if log is not None and log.sampled():  # references only: encoded off the hot path
            engine = self.engine  # what it decided with (no await since: the same objects)
            log.submit(
                PendingDecision(
                    decision_id, now, request, answers, library, locale, profile, store_ok,
                    state, slots, engine.board, bandits=engine.bandits,
                    model=engine.model_version,
                )
            )  # fmt: skip
        return orjson.dumps(
            {
                "template": request.template,
                "locale": locale,
                "contentVersion": library.version,
                "degraded": not store_ok,
                "decisionId": decision_id,
                "slots": answers,
            }
        )

    def _from_fallback(self, request: AssembleRequest, cause: str) -> bytes:
        fallback = self._fallback
        if request.template is not None:
            keys: Sequence[str] = fallback.templates.get(request.template, ())
        else:
            keys = request.slots or ()
        answers = []
        for key in keys:
            rendered = fallback.slots.get(key)
            if rendered is not None:
                answers.append(
                    _slot_json(key, None, "fallback", cause, None, rendered.entry, rendered.style)
                )
        if not answers:
            what = f"template {request.template!r}" if request.template else "these slots"
            raise ContentUnavailable(
                f"no content is known for {what} yet: the library is not loaded and no "
                "last-good snapshot of this space has it; retry shortly"
            )
        metrics.FALLBACK_USED.labels(cause=cause).inc()
        metrics.ASSEMBLE_DEGRADED.labels(cause="library").inc()
        metrics.SLOTS_BY_SOURCE["fallback"].inc(len(answers))
        self.fallback_state.used(cause)
        now = self.clock()
        decision_id = new_decision_id(now)
        if self.decision_log is not None and self.decision_log.sampled():
            self.decision_log.submit(
                PendingDecision(decision_id, now, request, answers, fallback=cause)
            )
        return orjson.dumps(
            {
                "template": request.template,
                "locale": fallback.locale,
                "contentVersion": 0,
                "degraded": True,
                "decisionId": decision_id,
                "slots": answers,
            }
        )


def _answer(library: Library, slot: Slot, decision: Decision, locale: str) -> dict[str, Any]:
    variant = decision.variant
    rendered = library.render(variant.entry_id if variant else slot.baseline_id, variant, locale)
    if rendered is None:  # the compiler checked every link; only a racing store change lands here
        rendered = library.render(slot.baseline_id, None, locale)
        decision = Decision("baseline", "variant entry unavailable")
        variant = None
    assert rendered is not None
    return _slot_json(
        slot.key,
        variant.key if variant else None,
        decision.source,
        decision.reason,
        decision.experiment,
        rendered.entry,
        rendered.style,
    )


def _count_sources(answers: list[dict[str, Any]]) -> None:
    """One counter update per source and page (each update takes the metric's lock)."""
    counts: dict[str, int] = {}
    for answer in answers:
        source = answer["source"]
        counts[source] = counts.get(source, 0) + 1
    for source, count in counts.items():
        metrics.SLOTS_BY_SOURCE[source].inc(count)


def _slot_json(
    key: str,
    variant: str | None,
    source: str,
    reason: str,
    experiment: dict[str, Any] | None,
    entry: orjson.Fragment,
    style: orjson.Fragment,
) -> dict[str, Any]:
    return {
        "slot": key,
        "variant": variant,
        "source": source,
        "reason": reason,
        "experiment": experiment,
        "entry": entry,
        "style": style,
    }
