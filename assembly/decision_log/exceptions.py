"""Errors of the decision log routes."""

from __future__ import annotations

from assembly.exceptions import AssemblyError


class DecisionNotFound(AssemblyError):
    """No such decision was logged (not sampled, or trimmed by length or age)."""

    status_code = 404


class DecisionNotReplayable(AssemblyError):
    """The logged answer came from the fallback library: nothing was decided to replay."""

    status_code = 409
