"""Version strings for the ``$veq $vne $vgt $vgte $vlt $vlte`` operators (GrowthBook's order)."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Final

from assembly.targeting.jsvalues import as_double, is_number, number_to_string

_VERSION_NOISE: Final = re.compile("^v|\\+[^\n\r\u2028\u2029]*\\Z")
_VERSION_SEPARATOR: Final = re.compile(r"[-.]")
_ALL_DIGITS: Final = re.compile(r"[0-9]+")


def padded_version_string(value: Any) -> str:
    """GrowthBook's ``paddedVersionString``: a string whose order is the version order.

    ``v`` prefix and ``+build`` suffix are dropped, parts split on ``.`` and ``-``, numeric parts
    left-padded to 5 characters, and ``~`` appended to plain ``x.y.z`` so that a release sorts after
    its pre-releases: ``"1.2.3"`` gives ``"    1-    2-    3-~"``. Non-strings count as ``"0"``.
    """
    if is_number(value):
        value = number_to_string(as_double(value))
    if not isinstance(value, str) or not value:
        value = "0"
    return padded_text(value)


@lru_cache(maxsize=4096)
def padded_text(version: str) -> str:
    """``padded_version_string`` of a non-empty string, cached (the operators' fast path)."""
    parts = _VERSION_SEPARATOR.split(_VERSION_NOISE.sub("", version))
    if len(parts) == 3:
        parts.append("~")
    return "-".join(part.rjust(5) if _ALL_DIGITS.fullmatch(part) else part for part in parts)
