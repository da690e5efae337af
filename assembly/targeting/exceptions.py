"""The one error of targeting: a condition that cannot be compiled."""

from __future__ import annotations


class ConditionError(ValueError):
    """A condition that cannot be compiled; the message says where and why."""
