"""Decision ids: 12 hex digits of Unix milliseconds, then 12 of random bits.

Cheap (no syscall, no uuid), unique enough (48 random bits per millisecond), and ordered by
time as text, so the id index can be trimmed and read in order without a second score.
"""

from __future__ import annotations

import random
import re
from datetime import datetime

ID_PATTERN = re.compile(r"[0-9a-f]{24}")
_bits = random.getrandbits


def new_decision_id(now: datetime) -> str:
    return "%024x" % (int(now.timestamp() * 1000) << 48 | _bits(48))  # one format: cheapest


def is_decision_id(text: str) -> bool:
    return ID_PATTERN.fullmatch(text) is not None


def decision_ms(decision_id: str) -> int:
    """The Unix milliseconds an id was made at."""
    return int(decision_id[:12], 16)
