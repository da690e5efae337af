"""The wire shape of `POST /admin/explain` (documentation and response validation)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from assembly.schemas import Source


class RuleOutcome(BaseModel):
    rule: str = Field(description="kill switch, schedule, audiences, conditions, experiment, ...")
    outcome: Literal["pass", "fail", "decided", "skip"] = Field(
        description="pass: lets it through; fail: rules the candidate out; decided: this rule "
        "decided the slot or page; skip: not applicable"
    )
    detail: str
    read: dict[str, Any] = Field(description="what the rule read: profile values, counts, hashes")


class ModelScore(BaseModel):
    version: int | None = Field(description="the model version in force (null: none, rules decide)")
    score: float | None = Field(
        description="predicted conversion chance after seeing this variant; null: not scored"
    )
    threshold: float | None = Field(
        description="the modelThreshold that lets the model pick this candidate (its own, else "
        "the slot's): the model picks it when it ranks it first with this confidence"
    )


class CandidateExplanation(BaseModel):
    variant: str
    priority: int
    experiment: str | None
    considered: bool = Field(description="false: the engine decided before reaching it")
    eligible: bool
    rules: list[RuleOutcome]
    model: ModelScore | None = Field(
        default=None, description="the ranking model's score for this candidate (docs/learning.md)"
    )


class SlotExplanation(BaseModel):
    slot: str
    position: int = Field(description="where the slot is shown (after sequencing)")
    source: Source
    variant: str | None
    reason: str = Field(description="the reason assemble gives")
    experiment: dict[str, Any] | None
    decidedBy: str = Field(description="the rule that decided: kill switch, consent, ...")
    steps: list[RuleOutcome]
    candidates: list[CandidateExplanation]


class ExplainResponse(BaseModel):
    template: str | None
    locale: str
    contentVersion: int
    degraded: bool
    at: str
    visitor: dict[str, Any]
    page: list[RuleOutcome]
    slots: list[SlotExplanation]
