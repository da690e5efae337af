"""Where every benchmark writes its result document: `bench/results/<name>-<stamp>.json`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

RESULTS = Path(__file__).resolve().parent / "results"


def save_result(name: str, stamp: str, document: dict[str, Any]) -> Path:
    """The document as indented JSON under `bench/results/`; its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{stamp}.json"
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    return path
