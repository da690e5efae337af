"""An explanation as rich tables: the visitor, each slot's steps and candidates, the page."""

from __future__ import annotations

from typing import Any

import orjson
from rich.console import Group
from rich.table import Table
from rich.text import Text

READ_WIDTH = 400
_STYLE = {"pass": "green", "fail": "red", "decided": "bold yellow", "skip": "dim"}


def explain_tables(document: dict[str, Any]) -> Group:
    parts: list[Any] = [_visitor(document)]
    parts.extend(_slot(slot) for slot in document["slots"])
    parts.append(_steps("page", document["page"]))
    return Group(*parts)


def _visitor(document: dict[str, Any]) -> Table:
    visitor = document["visitor"]
    table = Table(title="visitor", show_header=False, title_justify="left")
    table.add_column("fact")
    table.add_column("value", overflow="fold")
    consent = visitor["consent"]
    rows = {
        "ids": f"user {visitor['userId']}, anonymous {visitor['anonymousId']}, "
        f"session {visitor['sessionId']}",
        "consent": f"{consent['value']} (from {consent['from']})",
        "audiences": ", ".join(visitor["audiences"]) or "none",
        "personas": ", ".join(visitor["personas"]) or "none",
        "traits": _compact(visitor["traits"]),
        "signals": _compact(visitor["signals"]),
        "content": f"version {document['contentVersion']}, template {document['template']}, "
        f"at {document['at']}" + (", DEGRADED (store unavailable)" if document["degraded"] else ""),
    }
    for name, value in rows.items():
        table.add_row(name, value)
    return table


def _slot(slot: dict[str, Any]) -> Table:
    shown = slot["variant"] or "baseline"
    title = (
        f"{slot['position']}. {slot['slot']}: {shown} ({slot['source']}) because "
        f"{slot['reason']!r} [decided by {slot['decidedBy']}]"
    )
    table = Table(title=Text(title), title_justify="left")
    for column in ("candidate", "rule", "outcome", "detail", "read"):
        table.add_column(column, overflow="fold")
    for step in slot["steps"]:
        _row(table, "(slot)", step)
    for candidate in slot["candidates"]:
        name = f"{candidate['variant']} (priority {candidate['priority']})"
        if not candidate["considered"]:
            name += ", not reached"
        elif candidate["eligible"]:
            name += ", eligible"
        for rule in candidate["rules"]:
            _row(table, name, rule)
            name = ""
    return table


def _steps(title: str, steps: list[dict[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("rule", "outcome", "detail", "read"):
        table.add_column(column, overflow="fold")
    for step in steps:
        table.add_row(
            step["rule"], _outcome(step["outcome"]), step["detail"], _compact(step["read"])
        )
    return table


def _row(table: Table, name: str, step: dict[str, Any]) -> None:
    read = _compact(step["read"])
    table.add_row(name, step["rule"], _outcome(step["outcome"]), step["detail"], read)


def _outcome(outcome: str) -> Text:
    return Text(outcome, style=_STYLE.get(outcome, ""))


def _compact(value: Any) -> str:
    if not value:
        return ""
    text = orjson.dumps(value, default=str).decode()
    return text if len(text) <= READ_WIDTH else text[: READ_WIDTH - 1] + "…"
