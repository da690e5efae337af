"""The page's decisions: every slot in §5 order, sequencing, `maxPersonalized`, then the writes.

`DecisionEngine.decide_page` is pure CPU over the in-process snapshot, the visitor and the state
read with the profile. It returns the writes the page view causes with its decisions; the
caller (`AssemblyService`) hands them to the off-path writer, and a preview or a replay drops them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from assembly.config import DecisionSettings
from assembly.decisions.rules import DecisionEnv, decide
from assembly.decisions.scoring import Scorer
from assembly.decisions.sequencing import Placed, cap_personalized, rerank
from assembly.decisions.state import DecisionState, Periods, VisitorWrite
from assembly.decisions.visitor import Visitor
from assembly.decisions.writes import build_write
from assembly.experiments.allocation import EMPTY_ALLOCATIONS, Allocations, AllocationSource
from assembly.killswitch import EMPTY_BOARD, BoardSource, SwitchBoard
from assembly.learning.compiled import CompiledModel, VisitorScores
from integration.library import Library
from integration.model import Slot, Template


class ModelSource(Protocol):
    """Where the engine finds the ranking model in force (`assembly.learning.holder.ModelHolder`;
    for a replay, the recorded version)."""

    @property
    def model(self) -> CompiledModel | None: ...


@dataclass(slots=True)  # not frozen: built on every page view, frozen costs twice as much
class PageDecision:
    """A page's decisions in page order, and what they write (None: nothing to write)."""

    placed: list[Placed]
    write: VisitorWrite | None


class DecisionEngine:
    def __init__(
        self,
        settings: DecisionSettings,
        *,
        switches: BoardSource | None = None,
        models: ModelSource | None = None,
        allocations: AllocationSource | None = None,
    ) -> None:
        self.settings = settings
        self.switches = switches
        self.models = models
        self.allocations = allocations
        self.scorer = Scorer(
            settings.score_specificity_weight,
            settings.score_recency_weight,
            settings.recency_half_life_seconds,
            settings.score_model_weight,
        )

    @property
    def board(self) -> SwitchBoard:
        return self.switches.board if self.switches is not None else EMPTY_BOARD

    @property
    def model_version(self) -> int | None:
        """The ranking model's version in force (None: the rules decide alone)."""
        model = self.models.model if self.models is not None else None
        return model.version if model is not None else None

    @property
    def bandits(self) -> Allocations:
        return self.allocations.allocations if self.allocations is not None else EMPTY_ALLOCATIONS

    def decide_page(
        self,
        library: Library,
        template: Template | None,
        slots: Sequence[Slot],
        visitor: Visitor,
        state: DecisionState,
        now: datetime,
    ) -> PageDecision:
        """The page's decisions, and what they write (only for a visitor with a state key)."""
        settings = self.settings
        env = self.env(visitor, state, now)
        switch = page_switch(library, template, env.board)
        placed = [(slot, decide(slot, visitor, now, switch, env)) for slot in slots]
        if template is not None:
            if template.sequencing == "engagement":
                placed = rerank(placed, visitor, env.now_ts, settings.engagement_half_life_seconds)
            if template.max_personalized is not None:
                placed = cap_personalized(placed, template.max_personalized)
        if state.key is None:
            return PageDecision(placed, None)
        write = build_write(
            placed,
            visitor,
            state,
            coherence=env.coherence,
            periods=env.periods or Periods.at(now),
            now=env.now_ts,
            session_ttl=settings.session_ttl_seconds,
        )
        return PageDecision(placed, write)

    def env(self, visitor: Visitor, state: DecisionState, now: datetime) -> DecisionEnv:
        """What the slot decisions of one page view read (also `assembly.explain`'s)."""
        settings = self.settings
        model = self.models.model if self.models is not None else None
        return DecisionEnv(
            state=state,
            board=self.board,
            scorer=self.scorer,
            coherence=settings.session_coherence and visitor.session_id is not None,
            guardrail_goal=settings.guardrail_goal_event,
            now_ts=now.timestamp(),
            model=VisitorScores(model, visitor) if model is not None else None,
            allocations=self.bandits,
        )


def page_switch(library: Library, template: Template | None, board: SwitchBoard) -> str | None:
    """The widest kill switch in force for the page: content first, then admin."""
    if library.kill_switch:
        return "global"
    if board.everything is not None:
        return "global (admin)"
    if template is not None:
        if template.kill_switch:
            return f"template {template.key}"
        if template.key in board.templates:
            return f"template {template.key} (admin)"
    return None
