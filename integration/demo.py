"""The bundled demo space (`templates/demo-space.json`) as a `ContentSource`.

It serves the file's Sync API body as the initial page and empty deltas afterwards, so the
demo goes through exactly the same normalize → store → library pipeline as Contentful.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from integration.schemas import Locale, SyncPage

DEMO_SPACE = Path(__file__).resolve().parent.parent / "templates" / "demo-space.json"
_TOKEN = "demo-space-v1"


class DemoSource:
    def __init__(self, path: Path = DEMO_SPACE) -> None:
        data: dict[str, Any] = orjson.loads(path.read_bytes())
        self._items: list[dict[str, Any]] = data["sync"]["items"]
        self._locales = [
            Locale(
                code=x["code"],
                name=x.get("name", ""),
                default=bool(x.get("default")),
                fallback_code=x.get("fallbackCode"),
            )
            for x in data["locales"]["items"]
        ]

    @property
    def name(self) -> str:
        return "demo"

    def fetch_sync_page(self, token: str | None) -> SyncPage:
        if token == _TOKEN:
            return SyncPage(items=[], next_sync_token=_TOKEN)
        return SyncPage(items=list(self._items), next_sync_token=_TOKEN)

    def fetch_locales(self) -> list[Locale]:
        return list(self._locales)
