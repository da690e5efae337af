"""`GET /docs`: the API described from the OpenAPI schema, as one self-contained HTML page.

FastAPI's Swagger UI and ReDoc pages load their scripts and styles from a CDN, so they are
blank on a machine without internet (and a CDN is one more party to trust). No package in our
lock ships those assets, so this page is rendered here, server-side, with no script and no
outside request: every operation with its parameters, request body and answers, then every
schema. The machine-readable schema stays at `/openapi.json`.
"""

from __future__ import annotations

import weakref
from html import escape
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{margin-bottom:.2rem} h2{margin-top:2rem;border-bottom:1px solid #ddd}
details{border:1px solid #ddd;border-radius:4px;margin:.4rem 0;padding:.3rem .6rem}
summary{cursor:pointer} code,pre{font:13px ui-monospace,monospace}
pre{background:#f6f6f6;padding:.5rem;overflow:auto}
.m{font-weight:bold;display:inline-block;width:4.5rem}
table{border-collapse:collapse} td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left}
"""


_PAGES: weakref.WeakKeyDictionary[FastAPI, str] = weakref.WeakKeyDictionary()  # one per app


@router.get("/docs")
async def docs(request: Request) -> HTMLResponse:
    app: FastAPI = request.app
    page = _PAGES.get(app)
    if page is None:
        page = _PAGES[app] = render(app.openapi())
    return HTMLResponse(page)


def render(schema: dict[str, Any]) -> str:
    info = schema.get("info", {})
    title = escape(f"{info.get('title', 'API')} {info.get('version', '')}")
    parts = [
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{title}</title>",
        f"<style>{_STYLE}</style></head><body><h1>{title}</h1>",
        f"<p>{escape(info.get('summary', ''))}</p>",
        '<p>Machine-readable: <a href="/openapi.json">/openapi.json</a>.</p><h2>Operations</h2>',
    ]
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            parts.append(_operation(method, path, operation))
    parts.append("<h2>Schemas</h2>")
    for name, body in schema.get("components", {}).get("schemas", {}).items():
        parts.append(
            f'<details id="{escape(name)}"><summary><code>{escape(name)}</code></summary>'
            f"{_json(body)}</details>"
        )
    parts.append("</body></html>")
    return "".join(parts)


def _operation(method: str, path: str, operation: dict[str, Any]) -> str:
    out = [
        f'<details><summary><span class="m">{escape(method.upper())}</span>'
        f"<code>{escape(path)}</code> {escape(operation.get('summary', ''))}</summary>"
    ]
    if operation.get("description"):
        out.append(f"<p>{escape(operation['description'])}</p>")
    if operation.get("parameters"):
        rows = "".join(
            f"<tr><td><code>{escape(p.get('name', ''))}</code></td><td>{escape(p.get('in', ''))}"
            f"</td><td>{'required' if p.get('required') else ''}</td></tr>"
            for p in operation["parameters"]
        )
        out.append(f"<p>Parameters</p><table>{rows}</table>")
    for media, content in operation.get("requestBody", {}).get("content", {}).items():
        out.append(f"<p>Request body <code>{escape(media)}</code></p>{_json(content['schema'])}")
    rows = "".join(
        f"<tr><td>{escape(str(status))}</td><td>{escape(answer.get('description', ''))}</td></tr>"
        for status, answer in operation.get("responses", {}).items()
    )
    out.append(f"<p>Answers</p><table>{rows}</table></details>")
    return "".join(out)


def _json(value: Any) -> str:
    return f"<pre>{escape(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())}</pre>"
