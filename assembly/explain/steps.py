"""One rule's outcome in an explanation: the rule, pass/fail/decided/skip, why, what it read."""

from __future__ import annotations

from typing import Any, Literal

Outcome = Literal["pass", "fail", "decided", "skip"]
Step = dict[str, Any]


def step(rule: str, outcome: Outcome, detail: str, read: dict[str, Any] | None = None) -> Step:
    return {"rule": rule, "outcome": outcome, "detail": detail, "read": read or {}}


def passed(ok: bool) -> Outcome:
    return "pass" if ok else "fail"
