"""Builders over the bundled demo space, for tests that change content."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from integration.normalize import Changes, normalize_items
from integration.store import writes_of

DEMO = Path(__file__).resolve().parents[2] / "templates" / "demo-space.json"


def demo_items() -> dict[str, dict[str, Any]]:
    items = json.loads(DEMO.read_text())["sync"]["items"]
    return {item["sys"]["id"]: item for item in items}


def with_fields(entry_id: str, **fields: Any) -> dict[str, Any]:
    """A demo item with some fields replaced (en-US), and its revision bumped."""
    item = copy.deepcopy(demo_items()[entry_id])
    for name, value in fields.items():
        item["fields"][name] = {"en-US": value}
    item["sys"]["revision"] += 1
    item["sys"]["updatedAt"] = "2026-11-20T10:00:00.000Z"
    return item


async def publish(app: FastAPI, *items: dict[str, Any], deletions: list[str] | None = None) -> None:
    """Write items to the store as a sync page would, then make the app swap its library."""
    runtime = app.state.services.integration
    changes = normalize_items(items)
    await runtime.content.write(writes_of(Changes(changes.upserts, deletions or [])))
    await runtime.holder.refresh()
