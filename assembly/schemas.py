"""The wire shapes of `POST /v1/assemble`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Key = Field(min_length=1, max_length=200)


class UserRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str | None = Field(default=None, min_length=1, max_length=256)
    anonymousId: str | None = Field(default=None, min_length=1, max_length=256)


class RequestContext(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    attributes: dict[str, Any] = Field(default_factory=dict)
    page: dict[str, Any] = Field(default_factory=dict)
    traits: dict[str, Any] = Field(default_factory=dict)
    audiences: list[str] = Field(default_factory=list, max_length=200)
    consent: bool | None = None


class PreviewOptions(BaseModel):
    """What an editor forces in a preview (docs/api.md "Preview")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    content: Literal["drafts", "published"] = Field(
        default="drafts", description="drafts (Preview API) or the published library"
    )
    audiences: list[str] | None = Field(
        default=None,
        max_length=50,
        description="mbAudience keys the visitor is a member of, and of no other audience",
    )
    variants: dict[str, str] = Field(
        default_factory=dict,
        max_length=100,
        description="slot key → the variant key to show there, or `baseline`",
    )
    arms: dict[str, str] = Field(
        default_factory=dict,
        max_length=50,
        description="experiment key → the arm to show (a variant key, or `control`)",
    )


class AssembleRequest(BaseModel):
    """Either `template` or `slots`; everything else optional."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            # Exactly one of `template` and `slots` (the validator below says so too).
            "oneOf": [
                {"required": ["template"], "properties": {"template": {"type": "string"}}},
                {"required": ["slots"], "properties": {"slots": {"type": "array"}}},
            ],
        },
    )

    template: str | None = Field(default=None, min_length=1, max_length=200)
    slots: list[str] | None = Field(default=None, min_length=1, max_length=100)
    user: UserRef = Field(default_factory=UserRef)
    sessionId: str | None = Field(default=None, min_length=1, max_length=256)
    locale: str | None = Field(default=None, min_length=2, max_length=35)
    context: RequestContext = Field(default_factory=RequestContext)
    preview: bool = Field(
        default=False,
        description="Preview: the latest drafts, decided without writing anything; needs the "
        "preview key (`X-Preview-Key`) or the admin token (`Authorization: Bearer`), else 401",
    )
    previewOptions: PreviewOptions | None = Field(
        default=None, description="What a preview forces; ignored without `preview: true`"
    )

    @model_validator(mode="after")
    def _template_or_slots(self) -> AssembleRequest:
        if (self.template is None) == (self.slots is None):
            raise ValueError("give exactly one of 'template' or 'slots'")
        return self


Source = Literal["variant", "experiment", "baseline", "fallback"]


class SlotAnswer(BaseModel):
    """Documentation model of one slot in the answer (the answer itself is pre-encoded)."""

    slot: str
    variant: str | None
    source: Source
    reason: str
    experiment: dict[str, Any] | None
    entry: dict[str, Any]
    style: dict[str, Any]


class PreviewInfo(BaseModel):
    """What a preview answer was decided on (only in answers to `preview: true`)."""

    content: Literal["drafts", "published"]
    detail: str | None = Field(description="why published content stands in for drafts")
    fetchedAt: float | None = Field(description="when the drafts were read (epoch seconds)")
    forced: dict[str, Any] = Field(description="the previewOptions in force")


class AssembleResponse(BaseModel):
    template: str | None
    locale: str
    contentVersion: int
    degraded: bool
    decisionId: str = Field(
        description="This answer's decision: time-ordered (12 hex digits of Unix ms, then 12 "
        "random); `GET /admin/decisions/{id}` shows it when it was logged (sampled)",
        pattern="^[0-9a-f]{24}$",
    )
    slots: list[SlotAnswer]
    preview: PreviewInfo | None = None


class SwitchChange(BaseModel):
    """Why a kill switch is set or lifted (kept in the audit log with who did it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: str = Field(min_length=1, max_length=500)
